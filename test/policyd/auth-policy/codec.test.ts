// The pure auth-policy codec: tables of real Dovecot 2.3.19 requests (captured from the private
// instance in e2e-dovecot.test.ts) and of garbage, then fast-check fuzzing. Seeds are random;
// fast-check prints the seed and the shrunk counterexample on failure.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  AuthPolicyRequestError,
  encodeResponse,
  MAX_BODY_BYTES,
  parseCommand,
  parseRequest,
  type AuthPolicyRequest,
  type ParseFailure,
} from '../../../policyd/auth-policy/codec.ts';

const RUNS = { bytes: 20_000, json: 20_000, roundTrip: 10_000, response: 5_000 };
const REASONS: ParseFailure[] = ['missing-command', 'unknown-command', 'too-large', 'not-json', 'not-object', 'bad-field', 'missing-field'];

const body = (s: string): Buffer => Buffer.from(s, 'utf8');
function reasonOf(fn: () => unknown): ParseFailure {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AuthPolicyRequestError, `expected AuthPolicyRequestError, got ${String(err)}`);
    return err.reason;
  }
  assert.fail('expected an AuthPolicyRequestError');
}

// Exactly what Dovecot 2.3.19 sent with the default auth_policy_request_attributes.
const DOVECOT_ALLOW = '{"device_id":"","login":"alice","protocol":"imap","pwhash":"0b9c","remote":"127.0.0.2","session_id":"rNrh4sxguZZ/AAAC","tls":false}';
const DOVECOT_REPORT =
  '{"device_id":"","login":"alice","protocol":"imap","pwhash":"0b9c","remote":"127.0.0.2","session_id":"rNrh4sxguZZ/AAAC","success":false,"policy_reject":false,"tls":false}';

describe('commands from the query', () => {
  const table: Array<[string, string | ParseFailure]> = [
    ['command=allow', 'allow'],
    ['?command=report', 'report'],
    ['tenant=a&command=allow', 'allow'], // auth_policy_server_url ending in '&'
    ['', 'missing-command'],
    ['cmd=allow', 'missing-command'],
    ['command=deny', 'unknown-command'],
    ['command=ALLOW', 'unknown-command'],
    ['command=allow&command=report', 'unknown-command'],
  ];
  for (const [query, want] of table) {
    test(`${JSON.stringify(query)} → ${want}`, () => {
      if (want === 'allow' || want === 'report') assert.equal(parseCommand(query), want);
      else assert.equal(reasonOf(() => parseCommand(query)), want);
    });
  }
});

describe('request bodies', () => {
  test('a real Dovecot allow request', () => {
    assert.deepEqual(parseRequest('command=allow', body(DOVECOT_ALLOW)), {
      command: 'allow',
      login: 'alice',
      pwhash: '0b9c',
      remote: '127.0.0.2',
      deviceId: '',
      protocol: 'imap',
      sessionId: 'rNrh4sxguZZ/AAAC',
      tls: false,
    });
  });

  test('a real Dovecot report carries success and policy_reject', () => {
    const r = parseRequest('command=report', body(DOVECOT_REPORT));
    assert.equal(r.command, 'report');
    assert.equal(r.success, false);
    assert.equal(r.policyReject, false);
    const ok = parseRequest('command=report', body(DOVECOT_REPORT.replace('"success":false', '"success":true')));
    assert.equal(ok.success, true);
  });

  test('unknown and nested attributes are ignored; missing ones are empty', () => {
    const r = parseRequest('command=allow', body('{"login":"bob","attrs":{"cos":"premium"},"n":5,"fail_type":"credentials","tried_username":"x"}'));
    assert.equal(r.login, 'bob');
    assert.equal(r.remote, '');
    assert.equal(r.pwhash, '');
    assert.equal(r.success, undefined);
    assert.ok(!('attrs' in r) && !('n' in r));
  });

  test('a __proto__ attribute neither pollutes nor sets anything', () => {
    const r = parseRequest('command=allow', body('{"__proto__":{"login":"mallory"},"remote":"192.0.2.1"}'));
    assert.equal(r.login, '');
    assert.equal(({} as Record<string, unknown>).login, undefined);
  });

  test('bytes that are not UTF-8 become U+FFFD instead of an error (a 400 would fail open)', () => {
    const raw = Buffer.concat([body('{"login":"a'), Buffer.from([0xff, 0xfe]), body('b"}')]);
    assert.equal(parseRequest('command=allow', raw).login, 'a\ufffd\ufffdb');
  });

  const garbage: Array<[string, string, string | Buffer, ParseFailure]> = [
    ['empty body', 'command=allow', '', 'not-json'],
    ['not JSON', 'command=allow', 'login=alice', 'not-json'],
    ['truncated JSON', 'command=allow', DOVECOT_ALLOW.slice(0, 40), 'not-json'],
    ['an array', 'command=allow', '[1,2]', 'not-object'],
    ['null', 'command=allow', 'null', 'not-object'],
    ['a string', 'command=allow', '"x"', 'not-object'],
    ['login as a number', 'command=allow', '{"login":5}', 'bad-field'],
    ['remote as null', 'command=allow', '{"remote":null}', 'bad-field'],
    ['success as a string', 'command=report', '{"success":"true"}', 'bad-field'],
    ['tls as 1', 'command=allow', '{"tls":1}', 'bad-field'],
    ['report without success', 'command=report', DOVECOT_ALLOW, 'missing-field'],
    ['over 16 KiB', 'command=allow', JSON.stringify({ login: 'x'.repeat(MAX_BODY_BYTES) }), 'too-large'],
    ['no command', '', DOVECOT_ALLOW, 'missing-command'],
  ];
  for (const [name, query, text, reason] of garbage) {
    test(`garbage: ${name} → ${reason}`, () => {
      assert.equal(reasonOf(() => parseRequest(query, typeof text === 'string' ? body(text) : text)), reason);
    });
  }

  test('exactly 16 KiB is accepted', () => {
    const pad = MAX_BODY_BYTES - JSON.stringify({ login: '' }).length;
    const text = JSON.stringify({ login: 'x'.repeat(pad) });
    assert.equal(Buffer.byteLength(text), MAX_BODY_BYTES);
    assert.equal(parseRequest('command=allow', body(text)).login.length, pad);
  });
});

describe('responses', () => {
  test('reject, allow and tarpit encode as Dovecot parses them', () => {
    assert.equal(encodeResponse({ status: -1, msg: 'go away' }).toString(), '{"status":-1,"msg":"go away"}');
    assert.equal(encodeResponse({ status: 0 }).toString(), '{"status":0,"msg":""}');
    assert.equal(encodeResponse({ status: 5 }).toString(), '{"status":5,"msg":""}');
  });
  test('statuses Dovecot cannot take are refused', () => {
    for (const status of [-2, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) assert.throws(() => encodeResponse({ status }), RangeError, String(status));
  });
});

/** A request is well-formed: every field has its type, the command matches the query. */
function assertWellFormed(r: AuthPolicyRequest): void {
  assert.ok(r.command === 'allow' || r.command === 'report');
  for (const f of ['login', 'pwhash', 'remote', 'deviceId', 'protocol', 'sessionId'] as const) assert.equal(typeof r[f], 'string', f);
  for (const f of ['tls', 'success', 'policyReject'] as const) assert.ok(r[f] === undefined || typeof r[f] === 'boolean', f);
  if (r.command === 'report') assert.equal(typeof r.success, 'boolean');
}

const queryArb = fc.oneof(fc.constantFrom('command=allow', 'command=report', '', 'command=', 'a=b&command=report', 'command=allow&command=allow'), fc.string());
const fieldArb = fc.record(
  {
    login: fc.oneof(fc.string(), fc.fullUnicodeString(), fc.integer()),
    pwhash: fc.oneof(fc.hexaString({ maxLength: 16 }), fc.constant(null)),
    remote: fc.oneof(fc.ipV4(), fc.ipV6(), fc.boolean()),
    session_id: fc.string(),
    success: fc.oneof(fc.boolean(), fc.string()),
    policy_reject: fc.boolean(),
    tls: fc.oneof(fc.boolean(), fc.constant(0)),
    extra: fc.jsonValue(),
  },
  { requiredKeys: [] },
);

describe('fuzz', () => {
  test(`${RUNS.bytes.toLocaleString('en')} random byte bodies: a request or a typed error, never anything else`, () => {
    const seen = new Set<string>();
    fc.assert(
      fc.property(queryArb, fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.json().map((j) => body(j))), (query, bytes) => {
        try {
          assertWellFormed(parseRequest(query, bytes));
          seen.add('ok');
        } catch (err) {
          if (!(err instanceof AuthPolicyRequestError)) throw err;
          assert.ok(REASONS.includes(err.reason));
          seen.add(err.reason);
        }
      }),
      { numRuns: RUNS.bytes },
    );
    for (const want of ['ok', 'not-json', 'not-object', 'missing-command', 'unknown-command']) assert.ok(seen.has(want), `never reached ${want}: ${[...seen].join(', ')}`);
  });

  test(`${RUNS.json.toLocaleString('en')} random attribute objects: typed fields parse, mistyped ones are bad-field`, () => {
    fc.assert(
      fc.property(fc.constantFrom<'allow' | 'report'>('allow', 'report'), fieldArb, (command, obj) => {
        const typesOk =
          (obj.login === undefined || typeof obj.login === 'string') &&
          (obj.pwhash === undefined || typeof obj.pwhash === 'string') &&
          (obj.remote === undefined || typeof obj.remote === 'string') &&
          (obj.success === undefined || typeof obj.success === 'boolean') &&
          (obj.tls === undefined || typeof obj.tls === 'boolean');
        const text = body(JSON.stringify(obj));
        if (!typesOk) return assert.equal(reasonOf(() => parseRequest(`command=${command}`, text)), 'bad-field');
        if (command === 'report' && obj.success === undefined) return assert.equal(reasonOf(() => parseRequest('command=report', text)), 'missing-field');
        const r = parseRequest(`command=${command}`, text);
        assertWellFormed(r);
        assert.equal(r.login, obj.login ?? '');
        assert.equal(r.remote, obj.remote ?? '');
        assert.equal(r.success, obj.success);
      }),
      { numRuns: RUNS.json },
    );
  });

  test(`${RUNS.roundTrip.toLocaleString('en')} Dovecot-shaped requests round-trip every field, any Unicode`, () => {
    fc.assert(
      fc.property(
        fc.record({ login: fc.fullUnicodeString(), pwhash: fc.hexaString(), remote: fc.oneof(fc.ipV4(), fc.ipV6()), device_id: fc.string(), protocol: fc.string(), session_id: fc.base64String() }),
        fc.option(fc.record({ success: fc.boolean(), policy_reject: fc.boolean() }), { nil: undefined }),
        (attrs, report) => {
          const command = report ? 'report' : 'allow';
          const r = parseRequest(`command=${command}`, body(JSON.stringify({ ...attrs, ...report, tls: true })));
          assert.deepEqual(r, {
            command,
            login: attrs.login,
            pwhash: attrs.pwhash,
            remote: attrs.remote,
            deviceId: attrs.device_id,
            protocol: attrs.protocol,
            sessionId: attrs.session_id,
            tls: true,
            ...(report ? { success: report.success, policyReject: report.policy_reject } : {}),
          });
        },
      ),
      { numRuns: RUNS.roundTrip },
    );
  });

  test(`${RUNS.response.toLocaleString('en')} responses decode back to their status and message`, () => {
    fc.assert(
      fc.property(fc.integer({ min: -1, max: 3600 }), fc.fullUnicodeString(), (status, msg) => {
        assert.deepEqual(JSON.parse(encodeResponse({ status, msg }).toString('utf8')), { status, msg });
      }),
      { numRuns: RUNS.response },
    );
  });
});
