/**
 * The pieces under the DKIM signer: key files (modes, no silent overwrite), the DNS TXT record
 * (parsed back from zone-file form and used to verify a real signature), the key store (unsafe
 * keys refused as OpenDKIM does) and the From-domain reader.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { dkimSign } from 'mailauth/lib/dkim/sign.js';
import { DkimKeyError, KeyStore } from '../../../milter/dkim/key-store.ts';
import {
  dnsRecordValue,
  dnsSelector,
  KeyExistsError,
  parseZoneFileTxt,
  txtChunks,
  writeNewKey,
  zoneFileRecord,
} from '../../../milter/dkim/keys.ts';
import { fromDomain, mailboxAddresses } from '../../../milter/dkim/from-domain.ts';
import { fixture, tempDir, verify } from '../../fixtures/dkim/mail.ts';

const mode = (p: string) => statSync(p).mode & 0o777;

describe('key files', () => {
  test('keygen writes KEYS_DIR/DOMAIN/SELECTOR.ALG.key 0600 in 0700 directories', (t) => {
    const dir = path.join(tempDir(t), 'keys');
    for (const algorithm of ['rsa', 'ed25519'] as const) {
      const key = writeNewKey(dir, 'Example.COM', 's1', algorithm);
      assert.equal(key.path, path.join(dir, 'example.com', `s1.${algorithm}.key`));
      assert.equal(mode(key.path), 0o600);
      const k = createPrivateKey(readFileSync(key.path));
      assert.equal(k.asymmetricKeyType, algorithm);
      if (algorithm === 'rsa') assert.equal(k.asymmetricKeyDetails?.modulusLength, 2048);
      assert.match(readFileSync(key.path, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/, 'PKCS#8 PEM');
    }
    assert.equal(mode(dir), 0o700);
    assert.equal(mode(path.join(dir, 'example.com')), 0o700);
  });

  test('an existing key is never overwritten without force; force replaces it, still 0600', (t) => {
    const dir = tempDir(t);
    const first = writeNewKey(dir, 'example.com', 's1', 'rsa');
    assert.throws(() => writeNewKey(dir, 'example.com', 's1', 'rsa'), (err: Error) => {
      assert.ok(err instanceof KeyExistsError);
      assert.match(err.message, /already exists; use --force/);
      return true;
    });
    assert.equal(readFileSync(first.path, 'utf8'), first.privateKeyPem, 'the old key is untouched');
    const second = writeNewKey(dir, 'example.com', 's1', 'rsa', { force: true });
    assert.notEqual(second.privateKeyPem, first.privateKeyPem);
    assert.equal(readFileSync(first.path, 'utf8'), second.privateKeyPem);
    assert.equal(mode(first.path), 0o600);
  });
});

describe('DNS TXT record', () => {
  test('rsa: p= is the SubjectPublicKeyInfo; ed25519: p= is the raw 32-byte key (RFC 8463)', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const spki = rsa.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    assert.equal(dnsRecordValue(rsa.privateKey), `v=DKIM1; k=rsa; p=${spki}`);
    const ed = generateKeyPairSync('ed25519');
    const value = dnsRecordValue(ed.privateKey);
    assert.match(value, /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
    const raw = Buffer.from(value.split('p=')[1]!, 'base64');
    assert.equal(raw.length, 32);
    assert.deepEqual(raw, Buffer.from(ed.publicKey.export({ format: 'jwk' }).x!, 'base64url'));
  });

  test('chunks are at most 255 characters and concatenate to the value', () => {
    const value = dnsRecordValue(generateKeyPairSync('rsa', { modulusLength: 4096 }).privateKey);
    const chunks = txtChunks(value);
    assert.equal(chunks[0], 'v=DKIM1; k=rsa; ');
    assert.ok(chunks.every((c) => c.length <= 255), chunks.map((c) => c.length).join());
    assert.equal(chunks.join(''), value);
  });

  test('the zone-file record, parsed back, verifies a signature made with the key (mailauth)', async () => {
    for (const algorithm of ['rsa', 'ed25519'] as const) {
      const pair = algorithm === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519');
      const selector = dnsSelector('s', algorithm);
      const record = zoneFileRecord('example.com', selector, dnsRecordValue(pair.privateKey));
      const m = /^(\S+)\.\tIN\tTXT\t\( ("[^"]*"\s*)+\)\n$/.exec(record);
      assert.ok(m, record);
      assert.equal(m[1], `${selector}._domainkey.example.com`);
      const raw = fixture('outbound.eml');
      // mailauth reads the keys from signatureData only; top-level signingDomain/selector/privateKey
      // (which its index.d.ts suggests) are ignored and nothing is signed.
      const signed = await dkimSign(raw, {
        canonicalization: 'relaxed/relaxed',
        signatureData: [
          {
            signingDomain: 'example.com',
            selector,
            privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }),
            algorithm: `${algorithm}-sha256`,
          },
        ],
      } as never);
      assert.match(signed.signatures, /^DKIM-Signature: /);
      const zone = { [m[1]!]: { TXT: [parseZoneFileTxt(record)] } };
      const results = await verify(signed.signatures + raw, zone);
      assert.deepEqual(results.map((r) => [r.algorithm, r.result]), [[`${algorithm}-sha256`, 'pass']]);
    }
  });
});

describe('key store', () => {
  const opts = (keysDir: string) => ({ keysDir, selector: 's1', algorithms: ['rsa', 'ed25519'] as const });

  test('loads every domain once; keysFor gives the configured selector, one key per algorithm in order', (t) => {
    const dir = tempDir(t);
    writeNewKey(dir, 'example.com', 's1', 'ed25519');
    writeNewKey(dir, 'example.com', 's1', 'rsa');
    writeNewKey(dir, 'example.com', 'old', 'rsa');
    writeNewKey(dir, 'example.net', 's1', 'rsa');
    writeFileSync(path.join(dir, 'example.com', 'README'), 'not a key');
    const store = KeyStore.load(opts(dir));
    assert.deepEqual(store.domains, ['example.com', 'example.net']);
    const keys = store.keysFor('EXAMPLE.com');
    assert.deepEqual(keys.map((k) => [k.selector, k.dnsSelector, k.algorithm]), [['s1', 's1', 'rsa'], ['s1', 's1-ed25519', 'ed25519']]);
    assert.equal(store.keysOf('example.com').length, 3, 'other selectors load too');
    assert.deepEqual(store.keysFor('example.net').map((k) => k.algorithm), ['rsa']);
    assert.deepEqual(store.keysFor('example.org'), []);
    const rsaOnly = KeyStore.load({ ...opts(dir), algorithms: ['rsa'] });
    assert.deepEqual(rsaOnly.keysFor('example.com').map((k) => k.algorithm), ['rsa']);
  });

  test('a missing keys directory is an empty store, not an error', (t) => {
    const store = KeyStore.load(opts(path.join(tempDir(t), 'nothing-here')));
    assert.deepEqual(store.domains, []);
  });

  test('a key group or others may read is refused with a clear error, as OpenDKIM does', (t) => {
    const dir = tempDir(t);
    const key = writeNewKey(dir, 'example.com', 's1', 'rsa');
    for (const loose of [0o644, 0o640, 0o604, 0o620]) {
      chmodSync(key.path, loose);
      assert.throws(() => KeyStore.load(opts(dir)), (err: Error) => {
        assert.ok(err instanceof DkimKeyError);
        assert.ok(err.message.includes(key.path), err.message);
        assert.match(err.message, new RegExp(`not secure: group or others may read or write it \\(mode 0${loose.toString(8)}\\).*chmod 600`));
        return true;
      });
    }
    chmodSync(key.path, 0o400);
    assert.equal(KeyStore.load(opts(dir)).keysFor('example.com').length, 1, 'owner-only read is fine');
  });

  test('a failed reload keeps the keys loaded before', (t) => {
    const dir = tempDir(t);
    writeNewKey(dir, 'example.com', 's1', 'rsa');
    const store = KeyStore.load(opts(dir));
    const bad = writeNewKey(dir, 'example.net', 's1', 'rsa');
    chmodSync(bad.path, 0o644);
    assert.throws(() => store.reload(), DkimKeyError);
    assert.deepEqual(store.domains, ['example.com']);
    chmodSync(bad.path, 0o600);
    assert.deepEqual(store.reload(), { domains: 2, keys: 2 });
  });

  test('mistyped, unparsable and short keys are refused; an OpenDKIM PKCS#1 key loads', (t) => {
    const dir = tempDir(t);
    mkdirSync(path.join(dir, 'example.com'), { mode: 0o700 });
    const put = (name: string, pem: string) => writeFileSync(path.join(dir, 'example.com', name), pem, { mode: 0o600 });
    const ed = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    put('s1.rsa.key', ed);
    put('s2.rsa.key', 'garbage');
    put('s3.rsa.key', generateKeyPairSync('rsa', { modulusLength: 512 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString());
    assert.throws(() => KeyStore.load(opts(dir)), (err: Error) => {
      assert.ok(err instanceof DkimKeyError);
      assert.equal(err.problems.length, 3, err.message);
      assert.match(err.message, /s1\.rsa\.key holds a ed25519 key, but its name says rsa/);
      assert.match(err.message, /s2\.rsa\.key is not a PEM private key/);
      assert.match(err.message, /s3\.rsa\.key is a 512-bit RSA key/);
      return true;
    });
    for (const f of ['s1.rsa.key', 's2.rsa.key', 's3.rsa.key']) rmSync(path.join(dir, 'example.com', f));
    // opendkim-genkey writes "BEGIN RSA PRIVATE KEY" (PKCS#1): moved over as SELECTOR.rsa.key, it signs.
    put('s1.rsa.key', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString());
    assert.equal(KeyStore.load(opts(dir)).keysFor('example.com')[0]?.algorithm, 'rsa');
  });
});

test('From domain: one From field with one mailbox, or a reason not to sign', () => {
  const from = (...values: string[]) => fromDomain(values.map((value) => ({ name: 'From', value })));
  assert.deepEqual(from('"Alice, Example" <alice@Example.COM>'), { domain: 'example.com' });
  assert.deepEqual(from('alice@example.com (Alice <mallory@evil.example>)'), { domain: 'example.com' });
  assert.deepEqual(from('"mallory@evil.example" <alice@example.com>'), { domain: 'example.com' });
  assert.deepEqual(from('Alice\n\t<alice@sub.example.com.>'), { domain: 'sub.example.com' });
  assert.deepEqual(from('a@bücher.example'), { domain: 'xn--bcher-kva.example' });
  assert.deepEqual(fromDomain([{ name: 'Subject', value: 'x' }]), { skip: 'no From header' });
  assert.deepEqual(from('a@example.com', 'b@example.com'), { skip: '2 From headers' });
  assert.deepEqual(from('a@example.com, b@example.org'), { skip: 'From has 2 addresses' });
  assert.deepEqual(from('Team: a@example.com, b@example.com;'), { skip: 'From has 2 addresses' });
  assert.deepEqual(from('undisclosed-recipients:;'), { skip: 'From has no address' });
  assert.deepEqual(from('alice@[192.0.2.1]'), { skip: 'From address has no usable domain' });
  assert.deepEqual(from('alice'), { skip: 'From address has no usable domain' });
  assert.deepEqual(mailboxAddresses('"q\\"x" <z@d.example> (c <e@f.example>), y@g.example'), ['z@d.example', 'y@g.example']);
});
