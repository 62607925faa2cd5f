/**
 * Per-account API tokens for the indexer's HTTP API (search, events). A token is 32 random bytes,
 * shown once as `ceer_<base64url>`; only its SHA-256 is stored, so a database dump leaks none.
 */
import { createHash, randomBytes } from 'node:crypto';
import type pg from 'pg';
import { normaliseAddress } from '../../accounts/repository.ts';

const PREFIX = 'ceer_';
const TOKEN = /^ceer_[A-Za-z0-9_-]{43}$/;

const digest = (token: string): Buffer => createHash('sha256').update(token).digest();

/** Creates a token for `account` and returns it; it cannot be shown again. */
export async function createToken(pool: pg.Pool, account: string, label?: string): Promise<string> {
  const token = PREFIX + randomBytes(32).toString('base64url');
  await pool.query('INSERT INTO api_tokens (account, token_sha256, label) VALUES ($1, $2, $3)', [normaliseAddress(account), digest(token), label ?? null]);
  return token;
}

/** The account a live token belongs to, or undefined (malformed, unknown or revoked). */
export async function verifyToken(pool: pg.Pool, token: string): Promise<string | undefined> {
  if (!TOKEN.test(token)) return undefined;
  const { rows } = await pool.query<{ account: string }>(
    'UPDATE api_tokens SET last_used_at = now() WHERE token_sha256 = $1 AND revoked_at IS NULL RETURNING account',
    [digest(token)],
  );
  return rows[0]?.account;
}

/** Revokes every token of `account`; returns how many were live. */
export async function revokeTokens(pool: pg.Pool, account: string): Promise<number> {
  const { rowCount } = await pool.query('UPDATE api_tokens SET revoked_at = now() WHERE account = $1 AND revoked_at IS NULL', [normaliseAddress(account)]);
  return rowCount ?? 0;
}

/** `Authorization: Bearer <token>`, or `?access_token=` (browsers can't set headers on a WebSocket). */
export function tokenFromRequest(headers: { authorization?: string }, url: URL): string | undefined {
  const m = /^Bearer\s+(\S+)$/i.exec(headers.authorization ?? '');
  return m?.[1] ?? url.searchParams.get('access_token') ?? undefined;
}
