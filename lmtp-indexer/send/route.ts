/**
 * POST /mail/send: builds the MIME message with nodemailer and submits it to Postfix's
 * submission port with the account's own credentials (HTTP Basic auth, passed on as SMTP AUTH).
 * We never see a password hash and never judge the password: Postfix (through Dovecot SASL)
 * does, so the message goes through our milter and gets DKIM-signed like any client's.
 * Answers `{ queueId, messageId, accepted, rejected }`; a 535 from Postfix is a 401 here,
 * other SMTP failures a 502 (5xx) or 503 (4xx) with Postfix's text.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import nodemailer from 'nodemailer';
import { z } from 'zod';
import type { LmtpConfig } from '../../core/config/lmtp.ts';
import { HttpError, readJson, sendJson, type Route, type RouteContext } from '../http/route.ts';

const MAX_BODY_BYTES = 25 * 1024 * 1024;
const addressList = z.union([z.string().min(3).max(320), z.array(z.string().min(3).max(320)).min(1).max(100)]);

export const sendRequestSchema = z
  .object({
    to: addressList,
    cc: addressList.optional(),
    bcc: addressList.optional(),
    subject: z.string().max(998).default(''),
    text: z.string().max(10 * 1024 * 1024).optional(),
    html: z.string().max(10 * 1024 * 1024).optional(),
    inReplyTo: z.string().max(998).optional(),
    references: z.array(z.string().max(998)).max(100).optional(),
    attachments: z
      .array(
        z
          .object({
            filename: z.string().min(1).max(255),
            contentType: z.string().max(255).optional(),
            contentBase64: z.string().max(MAX_BODY_BYTES),
          })
          .strict(),
      )
      .max(50)
      .optional(),
  })
  .strict();

export type SendRequest = z.infer<typeof sendRequestSchema>;

function basicCredentials(req: IncomingMessage): { user: string; pass: string } {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(req.headers.authorization ?? '');
  if (!m) throw new HttpError(401, 'Basic credentials of the account required');
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) throw new HttpError(401, 'malformed Basic credentials');
  return { user: decoded.slice(0, colon), pass: decoded.slice(colon + 1) };
}

/** `250 2.0.0 Ok: queued as 4Xyz` → `4Xyz` (Postfix's wording; other MTAs may say nothing). */
export function queueIdOf(response: string): string | null {
  return /queued as ([A-Za-z0-9]+)/.exec(response)?.[1] ?? null;
}

export function sendRoute(config: LmtpConfig['submission']): Route {
  return {
    method: 'POST',
    path: '/mail/send',
    async handle(req: IncomingMessage, res: ServerResponse, ctx: RouteContext) {
      const { user, pass } = basicCredentials(req);
      const parsed = sendRequestSchema.safeParse(await readJson(req, MAX_BODY_BYTES));
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        throw new HttpError(400, `${issue.path.join('.') || 'body'}: ${issue.message}`);
      }
      const body = parsed.data;
      const transport = nodemailer.createTransport({
        host: config.host,
        port: config.port,
        secure: false,
        requireTLS: config.requireTls,
        auth: { user, pass },
        connectionTimeout: config.timeoutMs,
        greetingTimeout: config.timeoutMs,
        socketTimeout: config.timeoutMs,
      });
      try {
        const info = await transport.sendMail({
          from: user,
          to: body.to,
          ...(body.cc ? { cc: body.cc } : {}),
          ...(body.bcc ? { bcc: body.bcc } : {}),
          subject: body.subject,
          ...(body.text !== undefined ? { text: body.text } : {}),
          ...(body.html !== undefined ? { html: body.html } : {}),
          ...(body.inReplyTo ? { inReplyTo: body.inReplyTo } : {}),
          ...(body.references ? { references: body.references } : {}),
          ...(body.attachments
            ? { attachments: body.attachments.map((a) => ({ filename: a.filename, content: Buffer.from(a.contentBase64, 'base64'), ...(a.contentType ? { contentType: a.contentType } : {}) })) }
            : {}),
        });
        const queueId = queueIdOf(info.response);
        ctx.log.info({ account: user, queueId, messageId: info.messageId, rcpts: info.accepted.length }, 'submitted');
        sendJson(res, 200, { queueId, messageId: info.messageId, accepted: info.accepted, rejected: info.rejected, response: info.response });
      } catch (err) {
        const e = err as Error & { responseCode?: number; response?: string; code?: string };
        ctx.log.warn({ account: user, code: e.code, responseCode: e.responseCode, response: e.response }, 'submission failed');
        if (e.code === 'EAUTH' || e.responseCode === 535) throw new HttpError(401, 'the submission server refused these credentials');
        if (e.responseCode) throw new HttpError(e.responseCode >= 500 ? 502 : 503, e.response ?? e.message);
        throw new HttpError(503, `submission server unreachable: ${e.message}`);
      } finally {
        transport.close();
      }
    },
  };
}
