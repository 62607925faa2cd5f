// The policy codec: `name=value` lines, an empty line ends a request; `action=…` replies.
// Every expected byte sequence below is written out by hand, never produced by our encoder. Every
// valid input is also decoded split at every byte offset and one byte at a time.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeReply, encodeRequest, PolicyDecoder, PolicyProtocolError, type PolicyDecoderOptions } from '../../../policyd/protocol/codec.ts';
import type { PolicyAttributes } from '../../../policyd/types.ts';

const bytes = (s: string) => Buffer.from(s, 'utf8');
/** Plain objects for deepEqual (decoded requests have a null prototype). */
const plain = (reqs: PolicyAttributes[]) => reqs.map((r) => ({ ...r }));

/**
 * Decode whole, in two pieces at every offset, and one byte at a time: all must give the same
 * requests and leave the same bytes pending, never more than the line cap. Returns the requests.
 */
function decodeEveryWay(input: Buffer, opts: Partial<PolicyDecoderOptions> = {}): PolicyAttributes[] {
  const feeds: Buffer[][] = [[input], [...input].map((x) => Buffer.from([x]))];
  for (let i = 1; i < input.length; i++) feeds.push([input.subarray(0, i), input.subarray(i)]);
  const cap = opts.maxLineBytes ?? 8192;
  const whole = new PolicyDecoder(opts);
  const want = whole.push(input);
  for (const pieces of feeds) {
    const d = new PolicyDecoder(opts);
    const got: PolicyAttributes[] = [];
    for (const p of pieces) {
      got.push(...d.push(p));
      assert.ok(d.pendingBytes <= cap, `pending ${d.pendingBytes} over the cap ${cap}`);
    }
    assert.deepEqual(plain(got), plain(want), `${pieces.length} pieces`);
    assert.equal(d.pendingBytes, whole.pendingBytes, `${pieces.length} pieces: pending bytes`);
    assert.equal(d.pendingAttributes, whole.pendingAttributes, `${pieces.length} pieces: pending attributes`);
  }
  return want;
}

/** Every way of feeding `input` must end in a PolicyProtocolError with `reason`. */
function rejectsEveryWay(input: Buffer, reason: string, opts: Partial<PolicyDecoderOptions> = {}): void {
  const feeds: Buffer[][] = [[input], [...input].map((x) => Buffer.from([x]))];
  for (let i = 1; i < input.length; i++) feeds.push([input.subarray(0, i), input.subarray(i)]);
  for (const pieces of feeds) {
    const d = new PolicyDecoder(opts);
    assert.throws(
      () => pieces.forEach((p) => d.push(p)),
      (err: unknown) => err instanceof PolicyProtocolError && err.reason === reason,
      `${pieces.length} pieces: expected ${reason}`,
    );
    assert.ok(d.pendingBytes <= (opts.maxLineBytes ?? 8192));
  }
}

const POSTFIX_38 =
  'request=smtpd_access_policy\n' +
  'protocol_state=RCPT\n' +
  'protocol_name=ESMTP\n' +
  'helo_name=mail.example.org\n' +
  'queue_id=\n' +
  'sender=alice@example.org\n' +
  'recipient=bob@example.net\n' +
  'recipient_count=0\n' +
  'client_address=2001:db8::25\n' +
  'client_name=mail.example.org\n' +
  'reverse_client_name=mail.example.org\n' +
  'instance=1a2b.6630f1c2.9e4d1.0\n' +
  'sasl_method=PLAIN\n' +
  'sasl_username=alice\n' +
  'sasl_sender=\n' +
  'size=12345\n' +
  'ccert_subject=\n' +
  'ccert_issuer=Wietse+20Venema\n' +
  'ccert_fingerprint=\n' +
  'encryption_protocol=TLSv1.3\n' +
  'encryption_cipher=TLS_AES_256_GCM_SHA384\n' +
  'encryption_keysize=256\n' +
  'etrn_domain=\n' +
  'stress=\n' +
  'ccert_pubkey_fingerprint=68:B3:29:DA\n' +
  'client_port=50123\n' +
  'policy_context=submission\n' +
  'server_address=2001:db8::1\n' +
  'server_port=587\n' +
  'compatibility_level=3.6\n' +
  'mail_version=3.8.4\n' +
  '\n';

const VALID: Array<{ name: string; input: string | Buffer; want: Array<Record<string, string>>; opts?: Partial<PolicyDecoderOptions> }> = [
  { name: 'the smallest request', input: 'request=smtpd_access_policy\n\n', want: [{ request: 'smtpd_access_policy' }] },
  {
    name: 'every attribute Postfix 3.8 sends',
    input: POSTFIX_38,
    want: [Object.fromEntries(POSTFIX_38.trimEnd().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))],
  },
  { name: 'CRLF line ends', input: 'request=x\r\nsender=a@b\r\n\r\n', want: [{ request: 'x', sender: 'a@b' }] },
  { name: 'LF and CRLF mixed', input: 'request=x\r\nsender=a@b\n\r\n', want: [{ request: 'x', sender: 'a@b' }] },
  { name: 'a repeated attribute keeps its last value', input: 'sender=first\nsender=second\nsender=last\n\n', want: [{ sender: 'last' }] },
  { name: 'unknown attributes are kept', input: 'request=x\nx_future.attr-2=yes\n\n', want: [{ request: 'x', 'x_future.attr-2': 'yes' }] },
  { name: 'empty values', input: 'sender=\nqueue_id=\n\n', want: [{ sender: '', queue_id: '' }] },
  { name: 'a value holding = keeps it', input: 'ccert_subject=CN=a=b\n\n', want: [{ ccert_subject: 'CN=a=b' }] },
  { name: 'spaces and tabs in a value are kept', input: 'helo_name= [192.0.2.1]\t\n\n', want: [{ helo_name: ' [192.0.2.1]\t' }] },
  { name: 'a CR inside a value is kept (only a CR before LF is dropped)', input: 'helo_name=a\rb\n\n', want: [{ helo_name: 'a\rb' }] },
  {
    name: 'SMTPUTF8 addresses decode as UTF-8',
    input: Buffer.from([...bytes('sender='), 0xe7, 0x94, 0xa8, 0x40, 0xc3, 0xa9, 0x2e, 0x65, 0x78, 0x0a, 0x0a]),
    want: [{ sender: '用@é.ex' }],
  },
  { name: 'an emoji (4-byte UTF-8) split anywhere', input: 'recipient=📬@example.org\n\n', want: [{ recipient: '📬@example.org' }] },
  {
    name: 'malformed UTF-8 becomes U+FFFD',
    input: Buffer.from([...bytes('helo_name=a'), 0xff, 0xc3, ...bytes('b\n\n')]),
    want: [{ helo_name: 'a\ufffd\ufffdb' }],
  },
  {
    name: 'names that are Object.prototype members are plain keys',
    input: '__proto__=p\nconstructor=c\ntoString=t\nhasOwnProperty=h\n\n',
    want: [JSON.parse('{"__proto__":"p","constructor":"c","toString":"t","hasOwnProperty":"h"}') as Record<string, string>],
  },
  { name: 'every name character', input: 'AZaz09_.-=v\n\n', want: [{ 'AZaz09_.-': 'v' }] },
  {
    name: 'two requests back to back',
    input: 'request=a\nsender=x@y\n\nrequest=b\n\n',
    want: [{ request: 'a', sender: 'x@y' }, { request: 'b' }],
  },
  { name: 'a line of exactly maxLineBytes (16)', input: 'abcdefgh=1234567\n\n', want: [{ abcdefgh: '1234567' }], opts: { maxLineBytes: 16 } },
  { name: 'a CRLF line whose CR is byte 16 of 16', input: 'abcdefgh=123456\r\n\n', want: [{ abcdefgh: '123456' }], opts: { maxLineBytes: 16 } },
  { name: 'exactly maxAttributes (3) lines', input: 'a=1\nb=2\nc=3\n\nd=4\n\n', want: [{ a: '1', b: '2', c: '3' }, { d: '4' }], opts: { maxAttributes: 3 } },
  { name: 'repeats count towards maxAttributes (3), but reset per request', input: 'a=1\na=2\na=3\n\na=4\na=5\na=6\n\n', want: [{ a: '3' }, { a: '6' }], opts: { maxAttributes: 3 } },
];

describe('PolicyDecoder: valid input, at every split', () => {
  for (const row of VALID) {
    test(row.name, () => {
      const input = typeof row.input === 'string' ? bytes(row.input) : row.input;
      const got = decodeEveryWay(input, row.opts);
      assert.deepEqual(plain(got), row.want);
      for (const r of got) assert.equal(Object.getPrototypeOf(r), null, 'null prototype');
    });
  }

  test('the Postfix 3.8 request has 31 attributes', () => {
    const [req] = decodeEveryWay(bytes(POSTFIX_38));
    assert.equal(Object.keys(req!).length, 31);
    assert.equal(req!.mail_version, '3.8.4');
  });

  test('a partial request stays pending until its empty line', () => {
    const d = new PolicyDecoder();
    assert.deepEqual(d.push(bytes('request=smtpd_access_policy\nsend')), []);
    assert.equal(d.pendingBytes, 4);
    assert.equal(d.pendingAttributes, 1);
    assert.deepEqual(d.push(bytes('er=a@b\n')), []);
    assert.equal(d.pendingBytes, 0);
    assert.equal(d.pendingAttributes, 2);
    assert.deepEqual(d.push(Buffer.alloc(0)), [], 'an empty chunk yields nothing');
    assert.deepEqual(plain(d.push(bytes('\nreq'))), [{ request: 'smtpd_access_policy', sender: 'a@b' }]);
    assert.equal(d.pendingBytes, 3, 'the start of the next request stays buffered');
    assert.equal(d.pendingAttributes, 0);
  });

  test('the default caps are the config defaults: 8192-byte lines, 128 attributes', () => {
    const long = `sender=${'a'.repeat(8192 - 7)}\n\n`;
    assert.equal(new PolicyDecoder().push(bytes(long))[0]!.sender!.length, 8185);
    assert.throws(() => new PolicyDecoder().push(bytes(`sender=${'a'.repeat(8186)}\n`)), { reason: 'line too long' });
    const many = Array.from({ length: 128 }, (_, i) => `a${i}=1\n`).join('');
    assert.equal(Object.keys(new PolicyDecoder().push(bytes(`${many}\n`))[0]!).length, 128);
    assert.throws(() => new PolicyDecoder().push(bytes(`${many}x=1\n`)), { reason: 'too many attributes' });
  });
});

const GARBAGE: Array<{ name: string; input: string | Buffer; reason: string; opts?: Partial<PolicyDecoderOptions> }> = [
  { name: 'a line without =', input: 'request\n', reason: 'line without =' },
  { name: 'HTTP', input: 'GET / HTTP/1.1\r\nHost: policy\r\n\r\n', reason: 'line without =' },
  { name: 'SMTP', input: 'EHLO client.example\r\n', reason: 'line without =' },
  { name: 'an empty name', input: '=value\n', reason: 'empty attribute name' },
  { name: 'a space in the name', input: 'request=x\nbad name=x\n', reason: 'bad attribute name' },
  { name: 'a colon in the name (a header)', input: 'Subject: a=b\n', reason: 'bad attribute name' },
  { name: 'a non-ASCII name', input: 'naïve=1\n', reason: 'bad attribute name' },
  { name: 'a CR inside the name', input: 'na\rme=1\n', reason: 'bad attribute name' },
  { name: 'a NUL in a value', input: 'sender=a\0b\n\n', reason: 'NUL byte' },
  { name: 'a NUL in a name', input: 'sen\0der=a\n', reason: 'NUL byte' },
  { name: 'a NUL with no LF yet (found before the line ends)', input: 'sender=a\0', reason: 'NUL byte' },
  { name: 'a NUL on the empty line', input: 'a=1\n\0\n', reason: 'NUL byte' },
  { name: 'a line one byte over the cap (16), with its LF', input: 'abcdefgh=12345678\n\n', reason: 'line too long', opts: { maxLineBytes: 16 } },
  { name: 'a CRLF line whose CR is byte 17 of 16', input: 'abcdefgh=1234567\r\n', reason: 'line too long', opts: { maxLineBytes: 16 } },
  { name: 'a line over the cap (16) and no LF at all', input: 'x'.repeat(17), reason: 'line too long', opts: { maxLineBytes: 16 } },
  { name: 'the cap counts bytes, not characters', input: 'a=éééééééé\n', reason: 'line too long', opts: { maxLineBytes: 16 } },
  { name: 'one attribute over maxAttributes (3)', input: 'a=1\nb=2\nc=3\nd=4\n\n', reason: 'too many attributes', opts: { maxAttributes: 3 } },
  { name: 'repeats over maxAttributes (3)', input: 'a=1\na=1\na=1\na=1\n', reason: 'too many attributes', opts: { maxAttributes: 3 } },
  { name: 'an empty line first', input: '\n', reason: 'empty request' },
  { name: 'a CRLF empty line first', input: '\r\n', reason: 'empty request' },
  { name: 'a second empty line after a request', input: 'request=x\n\n\n', reason: 'empty request' },
  { name: 'a NUL before an over-long run is reported as NUL', input: `a=\0${'x'.repeat(20)}`, reason: 'NUL byte', opts: { maxLineBytes: 16 } },
  { name: 'an over-long run before a NUL is reported as too long', input: `a=${'x'.repeat(20)}\0`, reason: 'line too long', opts: { maxLineBytes: 16 } },
];

describe('PolicyDecoder: garbage, at every split', () => {
  for (const row of GARBAGE) {
    test(row.name, () => rejectsEveryWay(typeof row.input === 'string' ? bytes(row.input) : row.input, row.reason, row.opts));
  }

  test('an over-long line is refused at the first byte past the cap, never buffered beyond it', () => {
    const d = new PolicyDecoder({ maxLineBytes: 16 });
    assert.deepEqual(d.push(bytes('x'.repeat(10))), []);
    assert.deepEqual(d.push(bytes('x'.repeat(6))), []);
    assert.equal(d.pendingBytes, 16);
    assert.throws(() => d.push(bytes('x')), (err: unknown) => err instanceof PolicyProtocolError && err.reason === 'line too long');
    assert.equal(d.pendingBytes, 16);
    // A 1 MiB chunk is refused without being copied in.
    const big = new PolicyDecoder({ maxLineBytes: 256 });
    assert.throws(() => big.push(Buffer.alloc(1024 * 1024, 0x61)), { reason: 'line too long' });
    assert.equal(big.pendingBytes, 0);
  });

  test('requests completed before the garbage travel on the error', () => {
    const d = new PolicyDecoder();
    let caught: unknown;
    try {
      d.push(bytes('request=a\n\nrequest=b\n\nbad line\n'));
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof PolicyProtocolError);
    assert.equal(caught.reason, 'line without =');
    assert.equal(caught.message, 'line without =: "bad line"');
    assert.deepEqual(plain(caught.requestsBefore), [{ request: 'a' }, { request: 'b' }]);
  });

  test('after an error the decoder stays failed', () => {
    const d = new PolicyDecoder();
    assert.throws(() => d.push(bytes('=x\n')), { reason: 'empty attribute name' });
    assert.throws(() => d.push(bytes('request=fine\n\n')), { reason: 'empty attribute name' });
  });

  test('the detail quotes at most 40 bytes of the offending name', () => {
    const d = new PolicyDecoder();
    assert.throws(() => d.push(bytes(`${'n'.repeat(60)} x=1\n`)), (err: unknown) => {
      assert.ok(err instanceof PolicyProtocolError);
      assert.equal(err.message, `bad attribute name: "${'n'.repeat(40)}"…`);
      return true;
    });
  });
});

describe('encodeReply', () => {
  const table: Array<[string, Buffer]> = [
    ['DUNNO', Buffer.from([0x61, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x3d, 0x44, 0x55, 0x4e, 0x4e, 0x4f, 0x0a, 0x0a])],
    ['defer_if_permit 4.7.1 Rate limit exceeded', bytes('action=defer_if_permit 4.7.1 Rate limit exceeded\n\n')],
    ['REJECT Blocked: café', Buffer.concat([bytes('action=REJECT Blocked: caf'), Buffer.from([0xc3, 0xa9, 0x0a, 0x0a])])],
  ];
  for (const [action, want] of table) {
    test(`encodes ${JSON.stringify(action)}`, () => assert.deepEqual(encodeReply(action), want));
  }
  for (const bad of ['', 'DUNNO\n', 'OK\r', 'REJECT a\nREJECT b', 'OK\0', '\n\naction=OK']) {
    test(`refuses ${JSON.stringify(bad)}`, () => assert.throws(() => encodeReply(bad), TypeError));
  }
  test('refuses a non-string (a JavaScript handler returning undefined)', () => {
    assert.throws(() => encodeReply(undefined as unknown as string), TypeError);
  });
});

describe('encodeRequest', () => {
  test('encodes attributes in order, then the empty line', () => {
    assert.deepEqual(encodeRequest({ request: 'smtpd_access_policy', sender: '' }), bytes('request=smtpd_access_policy\nsender=\n\n'));
    assert.deepEqual(encodeRequest({ recipient: 'é@x' }), Buffer.from([...bytes('recipient='), 0xc3, 0xa9, 0x40, 0x78, 0x0a, 0x0a]));
  });
  test('what it encodes decodes to the same attributes', () => {
    const attrs = { request: 'smtpd_access_policy', sender: 'a=b@example.org', 'x.y-z_1': ' spaced ' };
    assert.deepEqual(plain(decodeEveryWay(encodeRequest(attrs))), [attrs]);
  });
  const bad: Array<[string, Record<string, string>]> = [
    ['no attributes', {}],
    ['an empty name', { '': 'x' }],
    ['a name with a space', { 'a b': 'x' }],
    ['a name with =', { 'a=b': 'x' }],
    ['a value with LF', { sender: 'a\nrequest=evil' }],
    ['a value with CR', { sender: 'a\r' }],
    ['a value with NUL', { sender: 'a\0' }],
  ];
  for (const [name, attrs] of bad) {
    test(`refuses ${name}`, () => assert.throws(() => encodeRequest(attrs), TypeError));
  }
});
