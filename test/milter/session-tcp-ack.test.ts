/**
 * Over TCP, a segment of commands nobody answers gets one SMFIR_PROGRESS back, so Postfix's
 * Nagle-held next packet is released by an ACK at once instead of after the ~40 ms delayed ACK.
 * Only Postfix (seen in the `v` macro) skips PROGRESS at every stage, so no one else gets them;
 * unix sockets have no Nagle and get none either.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { POSTFIX_OFFER } from '../../milter/client/milter-client.ts';
import { encodeCommand } from '../../milter/protocol/commands.ts';
import { Cmd } from '../../milter/protocol/constants.ts';
import { FrameDecoder } from '../../milter/protocol/framing.ts';
import { parseResponse, type Response } from '../../milter/protocol/responses.ts';
import { startTestMilter } from '../helpers/milter.ts';

/** A hand-driven MTA: sends what we say, in separate writes, and records every response. */
async function rawMta(t: TestContext, listen?: string) {
  const m = await startTestMilter(listen ? { listen } : {});
  const addr = m.address.startsWith('unix:') ? { path: m.address.slice(5) } : { port: m.server.port, host: '127.0.0.1' };
  const socket = net.connect(addr as net.NetConnectOpts);
  t.after(async () => {
    socket.destroy();
    await m.stop();
  });
  socket.setNoDelay(true);
  const seen: Response[] = [];
  const decoder = new FrameDecoder();
  socket.on('data', (chunk: Buffer) => decoder.push(chunk).forEach((f) => seen.push(parseResponse(f))));
  await new Promise((r) => socket.once('connect', r));
  socket.write(encodeCommand({ kind: 'optneg', ...POSTFIX_OFFER }));
  await until(() => seen.length === 1);
  assert.equal(seen.shift()!.kind, 'optneg');
  /** Each command in its own write, as Postfix sends them, waiting for each to arrive. */
  const sendSeparately = async (...cmds: Parameters<typeof encodeCommand>[0][]) => {
    for (const cmd of cmds) {
      socket.write(encodeCommand(cmd));
      await sleep(30);
    }
  };
  return { seen, sendSeparately };
}

async function until(cond: () => boolean, ms = 2000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(5);
  }
}

const headers = [
  { kind: 'header', name: 'From', value: ' a@example.com' },
  { kind: 'header', name: 'Subject', value: ' hi' },
] as const;

test('over TCP, Postfix gets one PROGRESS per reply-less segment, then the real verdict', async (t) => {
  const { seen, sendSeparately } = await rawMta(t);
  await sendSeparately({ kind: 'macro', forCommand: Cmd.BODYEOB, macros: [['v', 'Postfix 3.7.11']] }, ...headers);
  // Macro packet and two no-reply headers: three segments, three ACK-carrying PROGRESS frames.
  await until(() => seen.length === 3);
  assert.deepEqual(seen.map((r) => r.kind), ['progress', 'progress', 'progress']);
  await sendSeparately({ kind: 'eom', chunk: Buffer.alloc(0) });
  await until(() => seen.at(-1)?.kind === 'accept');
  // The end of message is answered by its own reply, with no PROGRESS in between.
  assert.deepEqual(seen.slice(3).map((r) => r.kind), ['insheader', 'accept']);
});

test('over TCP, an MTA that is not Postfix gets no unsolicited PROGRESS', async (t) => {
  const { seen, sendSeparately } = await rawMta(t);
  await sendSeparately({ kind: 'macro', forCommand: Cmd.BODYEOB, macros: [['v', 'Sendmail 8.17']] }, ...headers, {
    kind: 'eom',
    chunk: Buffer.alloc(0),
  });
  await until(() => seen.at(-1)?.kind === 'accept');
  assert.deepEqual(seen.map((r) => r.kind), ['insheader', 'accept']);
});

test('over a unix socket (no Nagle) Postfix gets no unsolicited PROGRESS', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ceerion-ack-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { seen, sendSeparately } = await rawMta(t, `unix:${path.join(dir, 'm.sock')}`);
  await sendSeparately({ kind: 'macro', forCommand: Cmd.BODYEOB, macros: [['v', 'Postfix 3.7.11']] }, ...headers, {
    kind: 'eom',
    chunk: Buffer.alloc(0),
  });
  await until(() => seen.at(-1)?.kind === 'accept');
  assert.deepEqual(seen.map((r) => r.kind), ['insheader', 'accept']);
});
