// The response codec: what each kind of answer means, by table, then fuzzed packets (random and
// mutated valid responses) that must never make it throw anything but DnsError.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import dnsPacket, { type Answer, type Packet } from 'dns-packet';
import fc from 'fast-check';
import { encodeQuery, interpretResponse, normalizeName, SUPPORTED_TYPES, type Outcome, type Question } from '../../../core/dns/response.ts';
import { DnsError } from '../../../core/dns/types.ts';

const Q: Question = { id: 0x1234, name: 'example.com', type: 'TXT' };

function response(q: Question, answers: Answer[], opts: { rcode?: number; tc?: boolean; authorities?: Answer[]; qname?: string; qtype?: string; id?: number } = {}): Buffer {
  const packet: Packet = {
    type: 'response',
    id: opts.id ?? q.id,
    flags: (opts.tc ? dnsPacket.TRUNCATED_RESPONSE : 0) | (opts.rcode ?? 0),
    questions: [{ name: opts.qname ?? q.name, type: (opts.qtype ?? q.type) as 'TXT', class: 'IN' }],
    answers,
    authorities: opts.authorities ?? [],
  };
  return dnsPacket.encode(packet);
}

const soa = (ttl: number, minimum: number): Answer => ({
  type: 'SOA', name: 'example.com', ttl,
  data: { mname: 'ns.example.com', rname: 'hostmaster.example.com', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
});

describe('interpretResponse', () => {
  const table: Array<[string, Question, Buffer, Outcome]> = [
    ['TXT chunks decoded as strings', Q,
      response(Q, [{ type: 'TXT', name: 'example.com', ttl: 300, data: ['v=spf1 ', '-all'] }, { type: 'TXT', name: 'EXAMPLE.com', ttl: 100, data: 'x' }]),
      { kind: 'answer', answer: [['v=spf1 ', '-all'], ['x']], ttl: 100 }],
    ['MX in Node shape; null MX exchange is empty', { ...Q, type: 'MX' },
      response({ ...Q, type: 'MX' }, [{ type: 'MX', name: 'example.com', ttl: 60, data: { preference: 10, exchange: 'mx.example.com' } }, { type: 'MX', name: 'example.com', ttl: 60, data: { preference: 0, exchange: '.' } }]),
      { kind: 'answer', answer: [{ exchange: 'mx.example.com', priority: 10 }, { exchange: '', priority: 0 }], ttl: 60 }],
    ['CNAME chain followed, TTL is the smallest along it', { ...Q, type: 'A' },
      response({ ...Q, type: 'A' }, [
        { type: 'CNAME', name: 'example.com', ttl: 30, data: 'b.example.net' },
        { type: 'CNAME', name: 'b.example.net', ttl: 600, data: 'c.example.org' },
        { type: 'A', name: 'c.example.org', ttl: 120, data: '192.0.2.7' },
        { type: 'A', name: 'unrelated.example', ttl: 1, data: '192.0.2.8' },
      ]),
      { kind: 'answer', answer: ['192.0.2.7'], ttl: 30 }],
    ['CNAME asked for is not followed', { ...Q, type: 'CNAME' },
      response({ ...Q, type: 'CNAME' }, [{ type: 'CNAME', name: 'example.com', ttl: 30, data: 'b.example.net' }]),
      { kind: 'answer', answer: ['b.example.net'], ttl: 30 }],
    ['CNAME loop is a bad response', { ...Q, type: 'A' },
      response({ ...Q, type: 'A' }, [{ type: 'CNAME', name: 'example.com', ttl: 30, data: 'b.example' }, { type: 'CNAME', name: 'b.example', ttl: 30, data: 'example.com' }]),
      { kind: 'failure', code: 'EBADRESP' }],
    ['TTL with the top bit set counts as 0', { ...Q, type: 'A' },
      response({ ...Q, type: 'A' }, [{ type: 'A', name: 'example.com', ttl: 0x80000000, data: '192.0.2.1' }]),
      { kind: 'answer', answer: ['192.0.2.1'], ttl: 0 }],
    ['NXDOMAIN with SOA: negative TTL is min(SOA TTL, minimum)', Q,
      response(Q, [], { rcode: 3, authorities: [soa(900, 300)] }), { kind: 'negative', code: 'ENOTFOUND', ttl: 300 }],
    ['NODATA with SOA', Q, response(Q, [], { authorities: [soa(60, 300)] }), { kind: 'negative', code: 'ENODATA', ttl: 60 }],
    ['NODATA without SOA', Q, response(Q, [{ type: 'A', name: 'example.com', ttl: 5, data: '192.0.2.1' }]), { kind: 'negative', code: 'ENODATA', ttl: undefined }],
    ['SERVFAIL', Q, response(Q, [], { rcode: 2 }), { kind: 'failure', code: 'ESERVFAIL' }],
    ['REFUSED', Q, response(Q, [], { rcode: 5 }), { kind: 'failure', code: 'EREFUSED' }],
    ['NOTIMP', Q, response(Q, [], { rcode: 4 }), { kind: 'failure', code: 'EBADRESP' }],
    ['TC bit', Q, response(Q, [], { tc: true }), { kind: 'truncated' }],
    ['another id is not ours', Q, response(Q, [], { id: 0x4321 }), { kind: 'ignore' }],
    ['another question is not ours', Q, response(Q, [], { qname: 'evil.example' }), { kind: 'ignore' }],
    ['another type is not ours', Q, response(Q, [], { qtype: 'A' }), { kind: 'ignore' }],
    ['a query is not an answer', Q, encodeQuery(Q), { kind: 'ignore' }],
    ['too short for a header', Q, Buffer.from([0x12, 0x34, 0x80]), { kind: 'ignore' }],
    ['a truncated packet cut mid-record still means TCP', Q,
      response(Q, [{ type: 'TXT', name: 'example.com', ttl: 1, data: 'x'.repeat(200) }], { tc: true }).subarray(0, 60), { kind: 'truncated' }],
  ];
  for (const [name, q, buf, want] of table) test(name, () => assert.deepEqual(interpretResponse(buf, q), want));

  test('question matching ignores case and the trailing dot', () => {
    assert.equal(interpretResponse(response(Q, [], { qname: 'Example.COM.' }), Q).kind, 'negative');
  });

  test('an undecodable packet with our id is EBADRESP', () => {
    const buf = response(Q, [{ type: 'TXT', name: 'example.com', ttl: 1, data: 'hello' }]).subarray(0, 40);
    assert.throws(() => interpretResponse(buf, Q), (err) => err instanceof DnsError && err.code === 'EBADRESP');
  });
});

describe('normalizeName', () => {
  test('lowercases and drops the trailing dot', () => assert.equal(normalizeName('Mail.Example.COM.', 'A'), 'mail.example.com'));
  test('names DNS cannot carry do not exist', () => {
    for (const bad of ['a..b', `${'x'.repeat(64)}.example`, `${'abc.'.repeat(64)}com`]) {
      assert.throws(() => normalizeName(bad, 'A'), (err) => err instanceof DnsError && err.code === 'ENOTFOUND', bad);
    }
  });
});

describe('fuzz: response handling never throws anything but DnsError', () => {
  const name = fc.constantFrom('example.com', 'EXAMPLE.com', 'b.example.net', 'c.example.org', '.', 'x.example.com');
  const ttl = fc.oneof(fc.nat(), fc.constant(0x80000000), fc.constant(0xffffffff));
  const dataOf: Record<string, fc.Arbitrary<unknown>> = {
    A: fc.ipV4(),
    AAAA: fc.ipV6(),
    TXT: fc.array(fc.string({ maxLength: 255 }), { maxLength: 3 }),
    MX: fc.record({ preference: fc.nat(65535), exchange: name }),
    CNAME: name,
    PTR: name,
    NS: name,
    SOA: fc.record({ mname: name, rname: name, minimum: fc.nat() }),
  };
  const recordOf = (type: string, names: fc.Arbitrary<string>) =>
    fc.record({ type: fc.constant(type), name: names, ttl, data: dataOf[type]! }) as unknown as fc.Arbitrary<Answer>;
  const anyRecord = fc.constantFrom(...Object.keys(dataOf)).chain((t) => recordOf(t, name));
  const question = fc.record({ id: fc.nat(65535), name: fc.constantFrom('example.com', 'b.example.net'), type: fc.constantFrom(...SUPPORTED_TYPES) });
  // Records are mostly of the asked type and name (or CNAMEs), so the answer-reading code runs often.
  const packetFor = (q: Question) =>
    fc.record({
      flags: fc.oneof({ arbitrary: fc.constantFrom(0, 0x80, 3), weight: 3 }, { arbitrary: fc.nat(0x7fff), weight: 1 }),
      answers: fc.array(
        fc.oneof(
          { arbitrary: recordOf(q.type, fc.constantFrom(q.name, q.name.toUpperCase())), weight: 4 },
          { arbitrary: recordOf('CNAME', name), weight: 1 },
          { arbitrary: anyRecord, weight: 1 },
        ),
        { maxLength: 6 },
      ),
      authorities: fc.array(fc.oneof(recordOf('SOA', name), anyRecord), { maxLength: 2 }),
      sameQuestion: fc.oneof({ arbitrary: fc.constant(true), weight: 4 }, { arbitrary: fc.constant(false), weight: 1 }),
    });
  // Mutations: overwrite bytes, cut, or splice random bytes in.
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: fc.nat(255) }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ maxLength: 8 }) }),
  );

  function mutate(buf: Buffer, muts: Array<fc.RecordValue<{ kind: string; at: number; byte?: number; bytes?: Uint8Array }>>): Buffer {
    let b = Buffer.from(buf);
    for (const m of muts) {
      const at = b.length ? m.at % b.length : 0;
      if (m.kind === 'set') b[at] = m.byte ?? 0;
      else if (m.kind === 'cut') b = b.subarray(0, at);
      else b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes ?? []), b.subarray(at)]);
    }
    return b;
  }

  const seen = new Map<string, number>();
  function check(buf: Buffer, q: Question): void {
    let outcome: Outcome;
    try {
      outcome = interpretResponse(buf, q);
    } catch (err) {
      assert.ok(err instanceof DnsError, `threw ${String(err)}`);
      assert.equal(err.code, 'EBADRESP');
      seen.set('throw EBADRESP', (seen.get('throw EBADRESP') ?? 0) + 1);
      return;
    }
    seen.set(outcome.kind, (seen.get(outcome.kind) ?? 0) + 1);
    assert.ok(['answer', 'negative', 'failure', 'truncated', 'ignore'].includes(outcome.kind));
    if (outcome.kind === 'answer') {
      assert.ok(outcome.answer.length > 0 && Number.isInteger(outcome.ttl) && outcome.ttl >= 0 && outcome.ttl <= 0x7fffffff);
      for (const a of outcome.answer) {
        if (q.type === 'TXT') assert.ok(Array.isArray(a) && a.every((c) => typeof c === 'string'));
        else if (q.type === 'MX') assert.ok(typeof (a as { exchange: unknown }).exchange === 'string');
        else assert.equal(typeof a, 'string');
      }
    }
  }

  test('mutated valid responses (≥ 10,000 runs)', () => {
    seen.clear();
    let runs = 0;
    fc.assert(
      fc.property(question.chain((q) => fc.tuple(fc.constant(q), packetFor(q))), fc.array(mutation, { maxLength: 4 }), ([q, p], muts) => {
        runs++;
        const qs = [{ name: p.sameQuestion ? q.name : 'other.example', type: q.type, class: 'IN' as const }];
        const bytes = dnsPacket.encode({ type: 'response', id: q.id, flags: p.flags, questions: qs, answers: p.answers, authorities: p.authorities });
        check(bytes, q);
        check(mutate(bytes, muts), q);
      }),
      { numRuns: 12_000 },
    );
    console.log(`fuzz: ${runs} runs (${runs * 2} packets, valid and mutated): ${JSON.stringify(Object.fromEntries(seen))}`);
    assert.ok(runs >= 10_000);
    // The fuzz must reach the record-reading code, not only the header checks.
    assert.ok((seen.get('answer') ?? 0) > 1_000 && (seen.get('negative') ?? 0) > 1_000, JSON.stringify(Object.fromEntries(seen)));
  });

  test('random bytes carrying our id and the QR bit (≥ 10,000 runs)', () => {
    seen.clear();
    let runs = 0;
    fc.assert(
      fc.property(question, fc.uint8Array({ maxLength: 600 }), (q, body) => {
        runs++;
        const head = Buffer.alloc(4);
        head.writeUInt16BE(q.id, 0);
        head.writeUInt16BE(0x8000 | (body[0] ?? 0), 2);
        check(Buffer.concat([head, body]), q);
      }),
      { numRuns: 12_000 },
    );
    console.log(`fuzz: ${runs} random packets: ${JSON.stringify(Object.fromEntries(seen))}`);
    assert.ok(runs >= 10_000);
  });
});
