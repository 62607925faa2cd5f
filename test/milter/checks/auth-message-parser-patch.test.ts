/**
 * The indexOf-based header/body split behaves exactly like mailauth's byte loops: same header
 * block, same body chunks in the same order, same state carried between writes, for random
 * messages (bare LFs, CR LF, lone CRs, header ends split across writes) cut at random points.
 * Also: DKIM verification through the service still passes and fails as before.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { messageParserPatched, original, type ParserState } from '../../../milter/checks/auth/message-parser-patch.ts';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { MessageParser } = require('mailauth/lib/dkim/message-parser.js') as {
  MessageParser: { prototype: { processChunk: typeof original.processChunk; ensureLinebreaks: typeof original.ensureLinebreaks } };
};

type Event = ['headers', string] | ['body', string];

/** A recording parser state, driven the way mailauth's writeAsync drives it. */
function recorder(impl: typeof original) {
  const events: Event[] = [];
  const self: ParserState = {
    state: 'header',
    stateBytes: [],
    headers: false,
    headerChunks: [],
    async messageHeaders() {
      events.push(['headers', Buffer.concat(self.headerChunks).toString('latin1')]);
    },
    async nextChunk(chunk: Buffer) {
      events.push(['body', chunk.toString('latin1')]);
    },
  };
  return {
    events,
    self,
    async write(chunk: Buffer) {
      for (const part of impl.ensureLinebreaks.call(self, chunk)) await impl.processChunk.call(self, part);
    },
  };
}

const patched = { processChunk: MessageParser.prototype.processChunk, ensureLinebreaks: MessageParser.prototype.ensureLinebreaks };

test('the patch is installed on mailauth MessageParser', () => {
  assert.equal(messageParserPatched, true);
  assert.notEqual(patched.processChunk, original.processChunk);
  assert.notEqual(patched.ensureLinebreaks, original.ensureLinebreaks);
});

const piece = fc.constantFrom('a', 'Subject: x', ':', ' ', '\t', '\r', '\n', '\r\n', '\n\n', '\r\n\r\n', '\n\r\n', '\r\r\n', 'body text');

test('patched and original split header and body identically (random messages, random cuts)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(piece, { maxLength: 60 }), fc.array(fc.nat(), { maxLength: 12 }), async (pieces, cutSeeds) => {
      const message = Buffer.from(pieces.join(''), 'latin1');
      const cuts = [...new Set(cutSeeds.map((c) => (message.length ? c % (message.length + 1) : 0)))].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      let at = 0;
      for (const c of [...cuts, message.length]) {
        chunks.push(message.subarray(at, c));
        at = c;
      }
      const a = recorder(original);
      const b = recorder(patched);
      for (const chunk of chunks) {
        await a.write(chunk);
        await b.write(chunk);
      }
      assert.deepEqual(b.events, a.events);
      assert.equal(b.self.state, a.self.state);
      assert.deepEqual(b.self.stateBytes, a.self.stateBytes);
      assert.equal(b.self.lastByte, a.self.lastByte);
      assert.equal(Buffer.concat(b.self.headerChunks).toString('latin1'), Buffer.concat(a.self.headerChunks).toString('latin1'));
    }),
    { numRuns: 20_000 },
  );
});

test('a signed message still verifies, and a tampered one still fails', async () => {
  const { dkimVerify } = require('mailauth/lib/dkim/verify') as { dkimVerify: (m: Buffer, o: object) => Promise<{ results: Array<{ status: { result: string } }> }> };
  const { rsaKey, sign } = await import('../../helpers/signed-mail.ts');
  const { zoneResolver } = await import('../../../core/dns/zone-resolver.ts');
  const key = rsaKey();
  const raw = 'From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nline one\nline two\r\n\r\n';
  const signed = await sign(raw, 'example.com', 's1', key);
  const resolver = zoneResolver({ 's1._domainkey.example.com': { TXT: [key.txt] } });
  const good = await dkimVerify(Buffer.from(signed), { resolver });
  assert.equal(good.results[0]!.status.result, 'pass');
  // mailauth reports a body-hash mismatch as neutral and a bad header signature as fail.
  const body = await dkimVerify(Buffer.from(signed.replace('line two', 'line 2')), { resolver });
  assert.equal(body.results[0]!.status.result, 'neutral');
  const header = await dkimVerify(Buffer.from(signed.replace('Subject: hi', 'Subject: ho')), { resolver });
  assert.equal(header.results[0]!.status.result, 'fail');
});
