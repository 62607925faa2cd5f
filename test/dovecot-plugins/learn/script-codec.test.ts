// The script-protocol codec: what Dovecot 2.3's program client sends, byte-exact (captured from a
// real vnd.dovecot.pipe), round trips, every split point, and fuzzing for "never anything but a
// request, null or a ScriptProtocolError".
import assert from 'node:assert/strict';
import test from 'node:test';
import fc from 'fast-check';
import { encodeScriptHeader, parseScriptHeader, ScriptProtocolError, tabEscape, tabUnescape } from '../../../dovecot-plugins/learn/script-codec.ts';

// As Dovecot 2.3.19 sent it for `pipe :copy "learn" ["spam"]` (captured on this machine).
const CAPTURED = Buffer.from('VERSION\tscript\t4\t0\nenv_USER=alice\nenv_HOME=/tmp/x/mail/alice\nenv_HOST=vm\n-\nspam\n\nFrom: a@example.com\r\n\r\nbody\r\n');

test('parses the request Dovecot sends and finds where the message starts', () => {
  const parsed = parseScriptHeader(CAPTURED, 16_384);
  assert.ok(parsed);
  assert.deepEqual(parsed.request, { major: 4, minor: 0, env: { USER: 'alice', HOME: '/tmp/x/mail/alice', HOST: 'vm' }, noreply: false, args: ['spam'] });
  assert.equal(CAPTURED.subarray(parsed.bodyOffset).toString(), 'From: a@example.com\r\n\r\nbody\r\n');
});

test('incomplete headers ask for more at every split point; the result never depends on the split', () => {
  const whole = parseScriptHeader(CAPTURED, 16_384);
  const headerEnd = whole!.bodyOffset;
  for (let i = 0; i < headerEnd; i++) assert.equal(parseScriptHeader(CAPTURED.subarray(0, i), 16_384), null, `prefix of ${i} bytes`);
  for (let i = headerEnd; i <= CAPTURED.length; i++) assert.deepEqual(parseScriptHeader(CAPTURED.subarray(0, i), 16_384), whole);
});

test('noreply, protocol 3, no environment, no arguments', () => {
  const buf = Buffer.from('VERSION\tscript\t3\t0\nnoreply\n\nmsg');
  assert.deepEqual(parseScriptHeader(buf, 1024), { request: { major: 3, minor: 0, env: {}, noreply: true, args: [] }, bodyOffset: buf.length - 3 });
});

test('garbage is refused early with a reason', () => {
  const bad: [string, RegExp][] = [
    ['GET / HTTP/1.1\r\n', /not a Dovecot script request/],
    ['VERSION\tscript\t9\t0\n', /version 9 is not supported/],
    ['VERSION\tscript\t4\t0\nenv_=x\n-\n\n', /malformed environment/],
    ['VERSION\tscript\t4\t0\nenv_USER\n-\n\n', /malformed environment/],
    ['VERSION\tscript\t4\t0\nspam\n\n', /expected "-" or "noreply"/],
    ['VERSION\tscript\t4\t0\n-\nsp\x01xam\n\n', /bad tab-escape/],
    ['VERSION\tscript\t4\t0\n-\n\xff\xfe\n\n', /not UTF-8/],
  ];
  for (const [input, why] of bad) {
    assert.throws(() => parseScriptHeader(Buffer.from(input, 'latin1'), 1024), (err: Error) => err instanceof ScriptProtocolError && why.test(err.message), JSON.stringify(input));
  }
  assert.throws(() => parseScriptHeader(Buffer.from(`VERSION\tscript\t4\t0\n-\n${'a'.repeat(2000)}`), 1024), /longer than 1024/);
});

test('a U+FFFD in an argument is valid UTF-8 and is kept (fuzz counterexample, seed 95763659)', () => {
  const parsed = parseScriptHeader(encodeScriptHeader({ env: { USER: '\uFFFDa' }, args: ['\uFFFD '] }), 1024);
  assert.deepEqual(parsed?.request.args, ['\uFFFD ']);
  assert.equal(parsed?.request.env.USER, '\uFFFDa');
});

test('tab-escaping round trips any string', () => {
  fc.assert(fc.property(fc.fullUnicodeString(), (s) => tabUnescape(tabEscape(s)) === s && !/[\t\r\n\0]/.test(tabEscape(s))), { numRuns: 2_000 });
});

test('fuzz: encode then parse gives back env and args, with the message untouched', () => {
  const name = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,20}$/);
  const arg = fc.fullUnicodeString({ minLength: 1, maxLength: 40 });
  fc.assert(
    fc.property(fc.dictionary(name, fc.fullUnicodeString({ maxLength: 40 }), { maxKeys: 6 }), fc.array(arg, { maxLength: 4 }), fc.uint8Array({ maxLength: 200 }), fc.boolean(), (env, args, body, noreply) => {
      const bytes = Buffer.concat([encodeScriptHeader({ env, args, noreply }), body]);
      const parsed = parseScriptHeader(bytes, 64 * 1024);
      assert.ok(parsed);
      assert.deepEqual(parsed.request.env, env);
      assert.deepEqual(parsed.request.args, args);
      assert.equal(parsed.request.noreply, noreply);
      assert.deepEqual(bytes.subarray(parsed.bodyOffset), Buffer.from(body));
    }),
    { numRuns: 5_000 },
  );
});

test('fuzz: arbitrary bytes give null, a request or a ScriptProtocolError, never anything else', () => {
  const prefix = fc.constantFrom('', 'VERSION\tscript\t4\t0\n', 'VERSION\tscript\t4\t0\nenv_USER=a\n-\n', 'VERSION\t');
  fc.assert(
    fc.property(prefix, fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 1, max: 400 }), (p, tail, max) => {
      try {
        const r = parseScriptHeader(Buffer.concat([Buffer.from(p), tail]), max);
        if (r) assert.ok(r.bodyOffset <= p.length + tail.length);
      } catch (err) {
        assert.ok(err instanceof ScriptProtocolError, String(err));
      }
    }),
    { numRuns: 20_000 },
  );
});
