// accounts/password.ts: hashes in the form Dovecot 2.3 stores and verifies (checked with Dovecot's
// own `doveadm pw -t`), and the password rules, as tables and as fast-check properties.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  BCRYPT_MAX_BYTES,
  checkPassword,
  generatePassword,
  GENERATED_LENGTH,
  hashPassword,
  MAX_PASSWORD_BYTES,
  parseScheme,
  PasswordPolicyError,
  PASSWORD_SCHEMES,
  type PasswordScheme,
} from '../../accounts/password.ts';

/** Whether Dovecot itself accepts `password` for `hash` (doveadm pw -t; exit 0 and "(verified)"). */
function dovecotVerifies(hash: string, password: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    execFile('doveadm', ['pw', '-t', hash, '-p', password], { encoding: 'utf8', timeout: 20_000 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') return reject(err);
      resolve(!err && /\(verified\)/.test(stdout + stderr));
    });
  });
}

const ARGON2ID_FORM = /^\{ARGON2ID\}\$argon2id\$v=19\$m=65536,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/;
const BLF_CRYPT_FORM = /^\{BLF-CRYPT\}\$2y\$12\$[./A-Za-z0-9]{53}$/;

test('ARGON2ID: PHC form with libsodium interactive costs and one lane; Dovecot verifies it', async (t) => {
  const started = performance.now();
  const hash = await hashPassword('correct horse battery staple');
  t.diagnostic(`ARGON2ID hash took ${(performance.now() - started).toFixed(0)} ms`);
  assert.match(hash, ARGON2ID_FORM);
  assert.notEqual(await hashPassword('correct horse battery staple'), hash, 'a fresh salt each time');
  assert.equal(await dovecotVerifies(hash, 'correct horse battery staple'), true);
  assert.equal(await dovecotVerifies(hash, 'correct horse battery stapl'), false);
});

test('BLF-CRYPT: $2y$ with cost 12, as doveadm writes it; Dovecot verifies it', async (t) => {
  const started = performance.now();
  const hash = await hashPassword('hunter2', 'BLF-CRYPT');
  t.diagnostic(`BLF-CRYPT hash took ${(performance.now() - started).toFixed(0)} ms`);
  assert.match(hash, BLF_CRYPT_FORM);
  assert.equal(await dovecotVerifies(hash, 'hunter2'), true);
  assert.equal(await dovecotVerifies(hash, 'Hunter2'), false);
  // bcrypt's limit exactly: 72 bytes are all used.
  const long = 'x'.repeat(BCRYPT_MAX_BYTES);
  const longHash = await hashPassword(long, 'BLF-CRYPT');
  assert.equal(await dovecotVerifies(longHash, long), true);
  assert.equal(await dovecotVerifies(longHash, `${long.slice(0, -1)}y`), false);
});

test('passwords are hashed as UTF-8 bytes, unnormalised, for both schemes', async () => {
  for (const scheme of PASSWORD_SCHEMES) {
    for (const password of ['pässwörd', 'пароль 🔑', `quote " and \\ and '`, ' leading and trailing ']) {
      const hash = await hashPassword(password, scheme);
      assert.equal(await dovecotVerifies(hash, password), true, `${scheme} ${password}`);
    }
    // é precomposed (NFC) and e + combining accent (NFD) look alike but are different bytes.
    const nfc = await hashPassword('caf\u00e9', scheme);
    assert.equal(await dovecotVerifies(nfc, 'cafe\u0301'), false, scheme);
  }
});

test('checkPassword and hashPassword refuse what cannot be a password, before hashing', async () => {
  const cases: Array<[string, PasswordScheme, RegExp]> = [
    ['', 'ARGON2ID', /empty/],
    ['line\nbreak', 'ARGON2ID', /control character/],
    ['tab\there', 'ARGON2ID', /control character/],
    ['nul\u0000', 'BLF-CRYPT', /control character/],
    ['del\u007f', 'ARGON2ID', /control character/],
    ['c1\u0085', 'ARGON2ID', /control character/],
    ['lone \ud800 high', 'ARGON2ID', /unpaired surrogate/],
    ['\udc00 lone low', 'BLF-CRYPT', /unpaired surrogate/],
    ['x'.repeat(MAX_PASSWORD_BYTES + 1), 'ARGON2ID', /at most 1024/],
    ['é'.repeat(513), 'ARGON2ID', /1026 bytes/],
    ['x'.repeat(BCRYPT_MAX_BYTES + 1), 'BLF-CRYPT', /only the first 72 bytes.*use ARGON2ID/],
  ];
  for (const [password, scheme, message] of cases) {
    assert.throws(() => checkPassword(password, scheme), (err: Error) => err instanceof PasswordPolicyError && message.test(err.message), JSON.stringify(password));
    await assert.rejects(hashPassword(password, scheme), PasswordPolicyError);
  }
  assert.doesNotThrow(() => checkPassword('x'.repeat(MAX_PASSWORD_BYTES)));
  assert.doesNotThrow(() => checkPassword('🔑'));
});

test('parseScheme: the two schemes, any case; anything else is refused', () => {
  assert.equal(parseScheme('argon2id'), 'ARGON2ID');
  assert.equal(parseScheme(' blf-crypt '), 'BLF-CRYPT');
  for (const bad of ['PLAIN', 'SHA512-CRYPT', 'argon2', '']) assert.throws(() => parseScheme(bad), /unknown password scheme.*ARGON2ID or BLF-CRYPT/);
});

// Code points that are not controls: what a person can type or paste into a login form.
const typeable = fc.string({ unit: 'binary', minLength: 1, maxLength: 200 }).filter((s) => !/[\u0000-\u001f\u007f-\u009f]/.test(s));
const control = fc.oneof(fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0x7f, max: 0x9f })).map((c) => String.fromCharCode(c));
const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

test('property: typeable passwords up to the limit are accepted; BLF-CRYPT exactly up to 72 bytes', () => {
  fc.assert(
    fc.property(typeable, (password) => {
      checkPassword(password, 'ARGON2ID');
      const fits = utf8Bytes(password) <= BCRYPT_MAX_BYTES;
      if (fits) checkPassword(password, 'BLF-CRYPT');
      else assert.throws(() => checkPassword(password, 'BLF-CRYPT'), /only the first 72 bytes/);
    }),
    { numRuns: 500 },
  );
});

test('property: one control character anywhere makes any password invalid', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 50 }), control, fc.nat(), fc.constantFrom(...PASSWORD_SCHEMES), (base, ctl, at, scheme) => {
      const cut = [...base];
      const i = at % (cut.length + 1);
      const password = [...cut.slice(0, i), ctl, ...cut.slice(i)].join('');
      assert.throws(() => checkPassword(password, scheme), /control character/);
    }),
    { numRuns: 500 },
  );
});

test('property: an unpaired surrogate makes any password invalid; paired ones are fine', () => {
  const high = fc.integer({ min: 0xd800, max: 0xdbff }).map((c) => String.fromCharCode(c));
  const low = fc.integer({ min: 0xdc00, max: 0xdfff }).map((c) => String.fromCharCode(c));
  fc.assert(
    fc.property(typeable, high, low, (password, h, l) => {
      assert.throws(() => checkPassword(`${password}${h}`), /unpaired surrogate/);
      assert.throws(() => checkPassword(`${l}${password}`), /unpaired surrogate/);
      checkPassword(`${password}${h}${l}`);
    }),
    { numRuns: 300 },
  );
});

test('property: the byte limit counts UTF-8 bytes, not characters', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', minLength: 1, maxLength: 8 }).filter((s) => !/[\u0000-\u001f\u007f-\u009f]/.test(s)), (unit) => {
      const password = unit.repeat(Math.ceil((MAX_PASSWORD_BYTES + 1) / utf8Bytes(unit)));
      assert.ok(utf8Bytes(password) > MAX_PASSWORD_BYTES);
      assert.throws(() => checkPassword(password), /at most 1024 are accepted/);
    }),
    { numRuns: 200 },
  );
});

test('generatePassword: 20 unambiguous letters and digits, valid for both schemes, never repeated', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 2_000; i++) {
    const password = generatePassword();
    assert.match(password, new RegExp(`^[a-km-zA-HJ-NP-Z2-9]{${GENERATED_LENGTH}}$`));
    for (const scheme of PASSWORD_SCHEMES) checkPassword(password, scheme);
    seen.add(password);
  }
  assert.equal(seen.size, 2_000);
});

test('hash time per scheme (reported, bounded so a CLI call stays interactive)', async (t) => {
  for (const scheme of PASSWORD_SCHEMES) {
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      await hashPassword('measure me', scheme);
      times.push(performance.now() - started);
    }
    const median = times.sort((a, b) => a - b)[1]!;
    t.diagnostic(`${scheme}: median ${median.toFixed(0)} ms over 3 hashes`);
    assert.ok(median < 5_000, `${scheme} took ${median} ms`);
  }
});
