/**
 * Checks that send mail: authenticated submission (DKIM-signed), mail from outside (our
 * Authentication-Results), EICAR (rejected at end of data) and the per-client rate limit (the
 * 101st message in an hour deferred).
 *
 * Outside clients are posed with XCLIENT as RFC 5737 addresses: each check gets its own, fresh per
 * run, so the rate limiter's per-address buckets never mix checks or runs.
 */
import { closeImap, deleteMessages, findUids, openImap, SMOKE_HEADER, waitForMessage } from './mailbox.ts';
import { eventually, marker, need, type SmokeContext } from './context.ts';
import { composeEicar, composeText, dkimSignatureFor, ourAuthResults, resultSummary } from './message.ts';
import { replyLine, SmtpSession } from './smtp.ts';
import { queueIdOf, type Deferred, type SentMessage, type SmokeCheck } from './types.ts';
import { freshClientAddress } from './redis-probe.ts';

/** A smoke message: marker in subject, body and our header (the header is what IMAP searches). */
function smokeMessage(ctx: SmokeContext, what: string, from: string, extraBody = ''): { marker: string; subject: string; text: string } {
  const m = marker(ctx, what);
  const subject = `CEERION smoke ${what} ${m}`;
  const text = composeText({ from, to: ctx.creds.user, subject, body: `Smoke test message (${what}).\r\nMarker: ${m}\r\n${extraBody}`, domain: ctx.state.domain });
  return { marker: m, subject, text: `${SMOKE_HEADER}: ${m}\r\n${text}` };
}

/** An inbound session posing as `addr` (XCLIENT), EHLO'd and ready for MAIL. */
export async function outsideSession(ctx: SmokeContext, addr: string, helo = 'smoke-client.example.net'): Promise<SmtpSession> {
  const smtp = need(ctx.state.endpoints.smtp, 'inbound SMTP');
  const s = await SmtpSession.connect({ ...smtp, timeoutMs: ctx.stepTimeoutMs });
  try {
    await s.ehlo('smoke.localhost');
    await s.xclient({ addr, name: '[UNAVAILABLE]', helo }, helo);
    return s;
  } catch (err) {
    s.close();
    throw err;
  }
}

/** Sends one message from outside; resolves with it once accepted (250 at end of data). */
async function sendFromOutside(ctx: SmokeContext, what: string, from: string): Promise<SentMessage> {
  const msg = smokeMessage(ctx, what, from);
  // An address another run's rate check exhausted within the hour (the Redis probe can miss one
  // taken concurrently) answers 450 Rate limit: that says nothing about this check, so try another.
  for (let attempt = 1; ; attempt++) {
    const addr = await freshClientAddress(ctx);
    const s = await outsideSession(ctx, addr);
    try {
      const r = await s.send(from, ctx.creds.user, msg.text);
      if (r.reply.code !== 250) {
        if (attempt < 3 && r.reply.code === 450 && /rate limit/i.test(r.reply.text)) continue;
        throw new Error(`as ${addr}: ${r.stage} answered ${replyLine(r.reply)}`);
      }
      const queueId = queueIdOf(r.reply.text);
      return { marker: msg.marker, subject: msg.subject, reply: replyLine(r.reply), ...(queueId ? { queueId } : {}) };
    } finally {
      await s.quit();
    }
  }
}

/** Runs `send`, hands its message to the readers (or its failure), and returns it. */
async function publish(target: Deferred<SentMessage>, send: () => Promise<SentMessage>): Promise<SentMessage> {
  try {
    const sent = await send();
    target.resolve(sent);
    return sent;
  } catch (err) {
    target.reject(err as Error);
    throw err;
  }
}

export const submitCheck: SmokeCheck = {
  id: 'submit',
  title: 'submit with auth (DKIM-signed)',
  async run(ctx, shared) {
    const sent = await publish(shared.submitted, async () => {
      const ep = need(ctx.state.endpoints.submission, 'submission');
      const msg = smokeMessage(ctx, 'submit', ctx.creds.user);
      const s = await SmtpSession.connect({ ...ep, timeoutMs: ctx.stepTimeoutMs });
      try {
        await s.ehlo('smoke.localhost');
        await s.authPlain(ctx.creds.user, ctx.creds.password);
        const r = await s.send(ctx.creds.user, ctx.creds.user, msg.text);
        if (r.reply.code !== 250) throw new Error(`${r.stage} answered ${replyLine(r.reply)}`);
        const queueId = queueIdOf(r.reply.text);
        return { marker: msg.marker, subject: msg.subject, reply: replyLine(r.reply), ...(queueId ? { queueId } : {}) };
      } finally {
        await s.quit();
      }
    });
    const imap = await openImap(ctx);
    try {
      const stored = await waitForMessage(ctx, imap, sent.marker, ['INBOX', 'Junk']);
      const sig = dkimSignatureFor(stored.raw, ctx.state.domain);
      if (!sig) throw new Error(`delivered to ${stored.mailbox} (queue id ${sent.queueId ?? '?'}) but no DKIM-Signature with d=${ctx.state.domain}`);
      if (sig.s !== ctx.creds.dkimSelector) throw new Error(`signed with selector s=${sig.s}, expected ${ctx.creds.dkimSelector}`);
      return `queue id ${sent.queueId ?? '?'}; DKIM-Signature d=${sig.d} s=${sig.s} a=${sig.a ?? '?'}`;
    } finally {
      await closeImap(imap);
    }
  },
};

export const receiveCheck: SmokeCheck = {
  id: 'receive',
  title: 'receive from outside (A-R header present)',
  async run(ctx, shared) {
    const sent = await publish(shared.received, () => sendFromOutside(ctx, 'receive', 'sender@smoke-outside.example'));
    const imap = await openImap(ctx);
    try {
      const stored = await waitForMessage(ctx, imap, sent.marker, ['INBOX', 'Junk']);
      const ar = ourAuthResults(stored.raw);
      if (!ar) throw new Error(`delivered to ${stored.mailbox} (queue id ${sent.queueId ?? '?'}) without our Authentication-Results header`);
      return `queue id ${sent.queueId ?? '?'}; ${ar.value.split(';')[0]}: ${resultSummary(ar.value) || ar.value}${ar.verified ? '' : ' (authserv-id not verified: no trace header)'}`;
    } finally {
      await closeImap(imap);
    }
  },
};

export const eicarCheck: SmokeCheck = {
  id: 'eicar',
  title: 'EICAR → rejected',
  async run(ctx) {
    const addr = await freshClientAddress(ctx);
    const m = marker(ctx, 'eicar');
    const text = `${SMOKE_HEADER}: ${m}\r\n${composeEicar({ from: 'sender@smoke-outside.example', to: ctx.creds.user, subject: `CEERION smoke eicar ${m}`, domain: ctx.state.domain })}`;
    const s = await outsideSession(ctx, addr);
    try {
      const r = await s.send('sender@smoke-outside.example', ctx.creds.user, text);
      if (r.stage !== 'end-of-data' || r.reply.code < 500) throw new Error(`expected 5xx at end of data, got ${replyLine(r.reply)} at ${r.stage}`);
      return replyLine(r.reply);
    } finally {
      await s.quit();
    }
  },
};

/** The policy service's default: 100 messages per hour per client address (policyd.limits.clientIp). */
export const RATE_LIMIT = 100;

export const rateCheck: SmokeCheck = {
  id: 'rate',
  title: `${RATE_LIMIT + 1}st message → deferred`,
  async run(ctx) {
    const addr = await freshClientAddress(ctx);
    const prefix = marker(ctx, 'rate');
    const from = 'bulk@smoke-outside.example';
    const s = await outsideSession(ctx, addr, 'smoke-bulk.example.net');
    let last = '';
    try {
      for (let i = 1; i <= RATE_LIMIT + 1; i++) {
        const msg = smokeMessage(ctx, `rate${i}`, from);
        const r = await s.send(from, ctx.creds.user, msg.text.replace(`${SMOKE_HEADER}: ${msg.marker}`, `${SMOKE_HEADER}: ${prefix} ${i}`));
        last = `${replyLine(r.reply)} at ${r.stage}`;
        if (i <= RATE_LIMIT && r.reply.code !== 250) throw new Error(`as ${addr}: message ${i} of ${RATE_LIMIT} refused: ${last}`);
        if (i === RATE_LIMIT + 1 && !(r.reply.code >= 400 && r.reply.code < 500 && /Rate limit exceeded/i.test(r.reply.text))) {
          throw new Error(`as ${addr}: message ${i} got ${last}, expected 4xx Rate limit exceeded`);
        }
      }
    } finally {
      await s.quit();
    }
    return `as ${addr}: ${RATE_LIMIT} accepted (${await cleanup(ctx, prefix)}), then ${last}`;
  },
};

/** Removes the batch from the test account once delivered; never fails the check. */
async function cleanup(ctx: SmokeContext, prefix: string): Promise<string> {
  try {
    const imap = await openImap(ctx);
    try {
      const n = await eventually('the batch', Math.max(ctx.stepTimeoutMs, 60_000), async () => {
        const found = (await findUids(imap, 'INBOX', prefix)).length + (await findUids(imap, 'Junk', prefix)).length;
        return found >= RATE_LIMIT ? found : undefined;
      }, 500);
      const removed = (await deleteMessages(imap, 'INBOX', prefix)) + (await deleteMessages(imap, 'Junk', prefix));
      return `${n} delivered, ${removed} removed again`;
    } finally {
      await closeImap(imap);
    }
  } catch (err) {
    return `cleanup skipped: ${(err as Error).message}`;
  }
}
