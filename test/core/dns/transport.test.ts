// The resolver's transport against a small dns-packet server of our own, for what dnsmasq will not
// do on demand: truncated UDP answers (TCP fallback), spoofed answers, SERVFAIL, SOA negative TTLs,
// and fuzzed answers over a real socket.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { createUdpResolver, NegativeAnswer } from '../../../core/dns/udp-resolver.ts';
import { DnsError } from '../../../core/dns/types.ts';
import { RCODE, reply, startDnsServer } from './dns-server.ts';

const isDnsError = (code: string) => (err: unknown) => err instanceof DnsError && err.code === code;
const LONG = Array.from({ length: 8 }, (_, i) => `${i}`.repeat(250));

describe('transport', () => {
  test('a truncated UDP answer is asked again over TCP', async (t) => {
    const server = await startDnsServer((q, transport) => {
      const name = q.questions![0]!.name;
      if (transport === 'udp') return [reply(q, [], { tc: true })];
      // A copy: dns-packet's encoder replaces the strings of a TXT array with Buffers in place.
      return [reply(q, [{ type: 'TXT', name, ttl: 77, data: [...LONG] }])];
    });
    t.after(() => server.close());
    const resolve = createUdpResolver({ servers: [server.server], timeoutMs: 1000, tries: 1 });
    assert.deepEqual(await resolve.resolveWithTtl('big.example', 'TXT'), { answer: [LONG], ttl: 77 });
    assert.deepEqual(server.queries.map((q) => q.transport), ['udp', 'tcp']);
  });

  test('answers with a wrong id or question are ignored; the real one is taken', async (t) => {
    const server = await startDnsServer((q) => {
      const name = q.questions![0]!.name;
      const good = reply(q, [{ type: 'A', name, ttl: 60, data: '192.0.2.1' }]);
      return [
        { ...good, id: (q.id! + 1) % 65536, answers: [{ type: 'A', name, ttl: 60, data: '203.0.113.66' }] },
        { ...good, questions: [{ type: 'A', name: 'other.example', class: 'IN' }], answers: [{ type: 'A', name: 'other.example', ttl: 60, data: '203.0.113.66' }] },
        Buffer.from('garbage'),
        good,
      ];
    });
    t.after(() => server.close());
    const resolve = createUdpResolver({ servers: [server.server], timeoutMs: 1000, tries: 1 });
    assert.deepEqual(await resolve('a.example', 'A'), ['192.0.2.1']);
  });

  test('SERVFAIL moves on to the next server at once', async (t) => {
    const failing = await startDnsServer((q) => [reply(q, [], { rcode: RCODE.SERVFAIL })]);
    t.after(() => failing.close());
    const good = await startDnsServer((q) => [reply(q, [{ type: 'A', name: q.questions![0]!.name, ttl: 60, data: '192.0.2.2' }])]);
    t.after(() => good.close());
    const resolve = createUdpResolver({ servers: [failing.server, good.server], timeoutMs: 2000, tries: 1 });
    const start = Date.now();
    assert.deepEqual(await resolve('a.example', 'A'), ['192.0.2.2']);
    assert.ok(Date.now() - start < 500);
  });

  test('SERVFAIL from every server is ESERVFAIL after tries rounds', async (t) => {
    const failing = await startDnsServer((q) => [reply(q, [], { rcode: RCODE.SERVFAIL })]);
    t.after(() => failing.close());
    const resolve = createUdpResolver({ servers: [failing.server], timeoutMs: 1000, tries: 3 });
    await assert.rejects(resolve('a.example', 'A'), isDnsError('ESERVFAIL'));
    assert.equal(failing.queries.length, 3);
  });

  test('NXDOMAIN with an SOA reports the negative TTL min(SOA TTL, minimum)', async (t) => {
    const server = await startDnsServer((q) => [
      reply(q, [], {
        rcode: RCODE.NXDOMAIN,
        authorities: [{ type: 'SOA', name: 'example', ttl: 3600, data: { mname: 'ns.example', rname: 'h.example', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 42 } }],
      }),
    ]);
    t.after(() => server.close());
    const resolve = createUdpResolver({ servers: [server.server], timeoutMs: 1000, tries: 1 });
    const err = await resolve.resolveWithTtl('nope.example', 'TXT').catch((e: unknown) => e);
    assert.ok(err instanceof NegativeAnswer && err.code === 'ENOTFOUND', String(err));
    assert.equal(err.ttl, 42);
  });

  test('fuzz over a real socket: every lookup ends in an answer or a DnsError', async (t) => {
    // Each query gets one mutated answer, then the valid one. A mutation may still be a well-formed
    // answer with our id (DNS has no integrity without DNSSEC) and be taken; otherwise the resolver
    // takes the valid one or gives up with a DnsError. It never throws anything else or hangs.
    let mutate: (b: Buffer) => Buffer = (b) => b;
    const server = await startDnsServer((q) => {
      const good = dnsPacket.encode(reply(q, [{ type: 'TXT', name: q.questions![0]!.name, ttl: 9, data: ['v=spf1 -all'] }]));
      return [mutate(good), good];
    });
    t.after(() => server.close());
    const resolve = createUdpResolver({ servers: [server.server], timeoutMs: 500, tries: 1 });
    let runs = 0;
    let answers = 0;
    let errors = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 4 }), fc.nat(), async (flips, cut) => {
        runs++;
        mutate = (b) => {
          const m = Buffer.from(b);
          for (const [at, byte] of flips) m[at % m.length] = byte;
          return cut % 3 === 0 ? m.subarray(0, cut % m.length) : m;
        };
        try {
          const answer = await resolve('fuzz.example', 'TXT');
          assert.ok(Array.isArray(answer) && answer.length > 0);
          for (const record of answer) assert.ok(Array.isArray(record) && record.every((c) => typeof c === 'string'));
          answers++;
        } catch (err) {
          if (!(err instanceof DnsError)) throw err;
          errors++;
        }
      }),
      { numRuns: 500 },
    );
    console.log(`fuzz over UDP: ${runs} lookups, ${answers} answers, ${errors} DnsErrors`);
    assert.equal(answers + errors, runs);
  });
});
