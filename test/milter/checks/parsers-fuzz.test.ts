/**
 * Fuzzing the small parsers the checks added: clamd's reply decoder, the Authentication-Results
 * readers and the From-domain parser used for signing. Each either answers or fails with its own
 * typed error, never anything else, for any input.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { authservIdOf, dmarcAction, forgedResultHeaders, parseHeaderBlock } from '../../../milter/checks/auth/results.ts';
import { parseConfig } from '../../../core/config/load.ts';
import { ClamdProtocolError, parseReply, ReplyDecoder } from '../../../milter/clamd/instream.ts';
import { fromDomain } from '../../../milter/dkim/from-domain.ts';

const RUNS = 20_000;
const headerText = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.constantFrom('mx.test; spf=pass', 'i=1; mx.test; dkim=pass', '(c) mx.test 1; none', '', ';;;', '()'),
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
);

test(`clamd replies: ${RUNS} random and mutated byte streams decode or raise ClamdProtocolError`, () => {
  const valid = ['stream: OK\0', 'stream: Eicar-Signature FOUND\0', 'INSTREAM size limit exceeded. ERROR\0', 'PONG\0'];
  const input = fc.oneof(
    fc.uint8Array({ maxLength: 5000 }).map((b) => Buffer.from(b)),
    fc.tuple(fc.constantFrom(...valid), fc.nat(40), fc.integer({ min: 0, max: 255 })).map(([v, at, byte]) => {
      const b = Buffer.from(v, 'latin1');
      if (at < b.length) b[at] = byte;
      return b;
    }),
  );
  fc.assert(
    fc.property(input, fc.array(fc.nat(64), { maxLength: 8 }), (bytes, cuts) => {
      const d = new ReplyDecoder(1024);
      let off = 0;
      try {
        for (const cut of [...cuts, bytes.length]) {
          const end = Math.min(bytes.length, off + cut);
          for (const reply of d.push(bytes.subarray(off, end))) assert.ok(['clean', 'virus', 'error'].includes(parseReply(reply).kind));
          off = end;
        }
      } catch (err) {
        if (!(err instanceof ClamdProtocolError)) throw err;
      }
    }),
    { numRuns: RUNS },
  );
});

test(`Authentication-Results readers: ${RUNS} random headers never throw`, () => {
  const cfg = parseConfig({}).milter.checks.auth.dmarc;
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.constantFrom('Authentication-Results', 'ARC-Authentication-Results', 'authentication-results', 'X'), headerText), { maxLength: 6 }), fc.string({ maxLength: 300 }), (fields, block) => {
      const headers = fields.map(([name, value]) => ({ name, value }));
      for (const h of headers) authservIdOf(h);
      for (const m of forgedResultHeaders(headers, 'mx.test')) assert.equal(m.kind, 'chgheader');
      for (const f of parseHeaderBlock(block)) assert.ok(f.name.length > 0);
      dmarcAction({ result: block.slice(0, 8), domain: block.slice(8, 40) || undefined, policy: block.slice(40, 50), pct: block.length % 120 }, cfg, Math.random);
    }),
    { numRuns: RUNS },
  );
});

test(`From-domain parser: ${RUNS} random From headers give a domain or a reason to skip`, () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.constantFrom('From', 'from', 'To', 'Sender'), headerText), { maxLength: 4 }), (fields) => {
      const r = fromDomain(fields.map(([name, value]) => ({ name, value })));
      assert.ok('domain' in r ? typeof r.domain === 'string' && r.domain.length > 0 : typeof r.skip === 'string');
    }),
    { numRuns: RUNS },
  );
});
