/**
 * Checks that read: IMAP (the messages checks 1 and 2 sent), the search API (a word only check
 * 2's message holds), and the WebSocket events endpoint (connected before its own message is sent,
 * so the `new` event must arrive live, not from a replay).
 */
import WebSocket from 'ws';
import { eventually, marker, type SmokeContext } from './context.ts';
import { outsideSession } from './checks-send.ts';
import { closeImap, openImap, SMOKE_HEADER, waitForMessage } from './mailbox.ts';
import { composeText } from './message.ts';
import { freshClientAddress } from './redis-probe.ts';
import { replyLine } from './smtp.ts';
import type { SentMessage, SmokeCheck } from './types.ts';

/** What a settled send gives a reader: the message, or why there is none. */
async function settled(p: Promise<SentMessage>): Promise<SentMessage | Error> {
  return p.catch((err: Error) => err);
}

export const imapCheck: SmokeCheck = {
  id: 'imap',
  title: 'IMAP read',
  async run(ctx, shared) {
    const imap = await openImap(ctx);
    try {
      const sent = [
        ['submit', await settled(shared.submitted.promise)],
        ['receive', await settled(shared.received.promise)],
      ] as const;
      const read: string[] = [];
      const missing: string[] = [];
      for (const [name, s] of sent) {
        if (s instanceof Error) {
          missing.push(`${name} (not sent)`);
          continue;
        }
        const stored = await waitForMessage(ctx, imap, s.marker, ['INBOX', 'Junk']);
        if (!stored.raw.includes(s.subject)) throw new Error(`${name}: ${stored.mailbox} UID ${stored.uid} does not hold the subject sent`);
        read.push(`${name} ${stored.mailbox}/${stored.uid} (${stored.raw.length} B)`);
      }
      if (read.length === 0) throw new Error(`logged in as ${ctx.creds.user}, but nothing to read: ${missing.join(', ')}`);
      return `${ctx.creds.user}: read ${read.join(', ')}${missing.length ? `; skipped ${missing.join(', ')}` : ''}`;
    } finally {
      await closeImap(imap);
    }
  },
};

interface SearchBody {
  hits?: Array<{ subject: string | null; mailbox: string | null }>;
  error?: string;
}

export const searchCheck: SmokeCheck = {
  id: 'search',
  title: 'search hit',
  async run(ctx, shared) {
    let s = await settled(shared.received.promise);
    if (s instanceof Error) s = await settled(shared.submitted.promise);
    if (s instanceof Error) throw new Error(`nothing to search for: neither the submit nor the receive message was sent (${s.message})`);
    const url = `${ctx.state.endpoints.api.replace(/\/$/, '')}/search?q=${encodeURIComponent(s.marker)}`;
    const hit = await eventually(`a search hit for ${s.marker}`, ctx.stepTimeoutMs, async () => {
      const res = await fetch(url, { headers: { authorization: `Bearer ${ctx.creds.apiToken}` }, signal: AbortSignal.timeout(ctx.stepTimeoutMs) });
      const body = (await res.json()) as SearchBody;
      if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${body.error ?? ''}`);
      return body.hits?.find((h) => h.subject === s.subject);
    }, 300);
    return `q=${s.marker}: "${hit.subject}"${hit.mailbox ? ` in ${hit.mailbox}` : ''}`;
  },
};

interface EventFrame {
  type?: string;
  seq?: number;
  kind?: string;
  payload?: { subject?: string };
}

/** Opens /events with the token; resolves once the hello frame came (the subscription is live). */
function openEvents(ctx: SmokeContext): Promise<{ ws: WebSocket; frames: EventFrame[]; hello: number; next(): Promise<void> }> {
  const url = `${ctx.state.endpoints.api.replace(/^http/, 'ws').replace(/\/$/, '')}/events`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${ctx.creds.apiToken}` }, handshakeTimeout: ctx.stepTimeoutMs });
    const frames: EventFrame[] = [];
    let wake: (() => void) | undefined;
    let helloSeen = false;
    ws.on('unexpected-response', (_req, res) => reject(new Error(`${url}: HTTP ${res.statusCode}`)));
    ws.on('error', (err) => reject(err));
    ws.on('close', (code) => {
      if (!helloSeen) reject(new Error(`${url} closed with ${code} before the hello frame`));
      wake?.();
    });
    ws.on('message', (data) => {
      let f: EventFrame;
      try {
        f = JSON.parse(String(data)) as EventFrame;
      } catch {
        return;
      }
      if (!helloSeen && f.type === 'hello') {
        helloSeen = true;
        resolve({ ws, frames, hello: f.seq ?? 0, next: () => new Promise((r) => (wake = r)) });
        return;
      }
      frames.push(f);
      wake?.();
    });
  });
}

export const eventsCheck: SmokeCheck = {
  id: 'events',
  title: 'WebSocket event',
  async run(ctx) {
    const started = Date.now();
    const ev = await openEvents(ctx);
    try {
      const m = marker(ctx, 'events');
      const subject = `CEERION smoke events ${m}`;
      const from = 'sender@smoke-outside.example';
      const s = await outsideSession(ctx, await freshClientAddress(ctx));
      try {
        const text = `${SMOKE_HEADER}: ${m}\r\n${composeText({ from, to: ctx.creds.user, subject, body: `Marker: ${m}`, domain: ctx.state.domain })}`;
        const r = await s.send(from, ctx.creds.user, text);
        if (r.reply.code !== 250) throw new Error(`sending the message: ${r.stage} answered ${replyLine(r.reply)}`);
      } finally {
        await s.quit();
      }
      const sentAt = Date.now();
      const deadline = sentAt + ctx.stepTimeoutMs;
      for (;;) {
        const f = ev.frames.find((x) => x.kind === 'new' && x.payload?.subject === subject);
        if (f) return `connected ${sentAt - started} ms before sending (hello seq ${ev.hello}); new event seq ${f.seq} after ${Date.now() - sentAt} ms`;
        if (ev.ws.readyState !== WebSocket.OPEN) throw new Error('the events socket closed before the new-mail event');
        if (Date.now() > deadline) throw new Error(`no new-mail event within ${Math.round(ctx.stepTimeoutMs / 1000)} s (${ev.frames.length} other frames)`);
        await Promise.race([ev.next(), new Promise((r) => setTimeout(r, 250))]);
      }
    } finally {
      ev.ws.terminate();
    }
  },
};
