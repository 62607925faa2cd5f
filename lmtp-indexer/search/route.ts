/**
 * `GET /search?q=…&limit=…&cursor=…` for the account the token belongs to.
 *   Authorization: Bearer <token>   (or ?access_token=<token>)
 * 200 SearchPage · 400 { error } for a bad query, limit or cursor (a bad query also has `code`,
 * QueryErrorCode) · 401 without a live token · 503 when PostgreSQL cancelled the search at its
 * deadline. An empty or missing q lists the account's mail newest first.
 */
import { tokenFromRequest, verifyToken } from '../auth/tokens.ts';
import { HttpError, sendJson, type Route } from '../http/route.ts';
import { QueryError } from './query.ts';
import { SearchInputError, searchMessages, SearchTimeoutError, type SearchDeps } from './service.ts';

/** `limit` as given: absent, or a whole number (its range is checked by the service). */
function limitParam(url: URL): number | undefined {
  const raw = url.searchParams.get('limit');
  if (raw === null || raw === '') return undefined;
  if (!/^\d{1,9}$/.test(raw)) throw new HttpError(400, 'limit must be a whole number');
  return Number(raw);
}

export function searchRoute(deps: SearchDeps): Route {
  return {
    method: 'GET',
    path: '/search',
    async handle(req, res, { url }) {
      const token = tokenFromRequest(req.headers, url);
      const account = token ? await verifyToken(deps.pool, token) : undefined;
      if (!account) {
        res.setHeader('www-authenticate', 'Bearer realm="ceerion"');
        throw new HttpError(401, token ? 'the token is unknown or revoked' : 'a token is required: Authorization: Bearer <token>');
      }
      try {
        const page = await searchMessages(deps, {
          account,
          query: url.searchParams.get('q') ?? '',
          limit: limitParam(url),
          cursor: url.searchParams.get('cursor') || undefined,
        });
        sendJson(res, 200, page);
      } catch (err) {
        // The parser's code lets a client highlight the problem; the message names it for people.
        if (err instanceof QueryError) sendJson(res, 400, { error: err.message, code: err.code });
        else if (err instanceof SearchInputError) throw new HttpError(400, err.message);
        else if (err instanceof SearchTimeoutError) throw new HttpError(503, err.message);
        else throw err;
      }
    },
  };
}
