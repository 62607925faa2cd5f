/**
 * The Vault transit provider with the real fetch against the in-process transit fake
 * (fake-vault.ts; see there for what it does not cover).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test, type TestContext } from 'node:test';
import { backupSchema } from '../../../core/config/backup.ts';
import { KeyError, type KeyContext, type KeyProvider } from '../../../backup/contracts.ts';
import { canonicalContext } from '../../../backup/keys/common.ts';
import { createKeyProvider } from '../../../backup/keys/index.ts';
import { createVaultKeyProvider, type VaultConfig, type VaultDeps } from '../../../backup/keys/vault-transit.ts';
import { FakeVault } from './fake-vault.ts';
import { rejectsKeyError } from './assert-key-error.ts';

const CTX: KeyContext = { backupId: '20261121T020000Z-3f9a1c', object: 'backups/20261121T020000Z-3f9a1c/' };
const KEY = 'ceerion-backup';

async function setup(t: TestContext, opts: { derived?: boolean } = {}) {
  const vault = await FakeVault.start();
  t.after(() => vault.close());
  vault.createKey(KEY, opts);
  const config = (over: Partial<VaultConfig> = {}): VaultConfig => ({
    address: `${vault.address}/`,
    token: vault.token,
    mount: 'transit',
    keyName: KEY,
    namespace: '',
    ...over,
  });
  const provider = (over: Partial<VaultConfig> = {}, deps: VaultDeps = {}): KeyProvider => createVaultKeyProvider(config(over), { env: {}, ...deps });
  return { vault, config, provider };
}

test('generateDataKey: datakey/plaintext with the canonical context and token; wrapped is vault:v1:', async (t) => {
  const { vault, provider } = await setup(t);
  const p = provider();
  const { plaintext, wrapped } = await p.generateDataKey(CTX);
  assert.equal(plaintext.length, 32);
  assert.equal(wrapped.provider, 'vault');
  assert.equal(wrapped.keyId, KEY);
  assert.equal(wrapped.version, '1');
  assert.match(wrapped.wrapped, /^vault:v1:/);
  const [info, datakey] = vault.requests;
  assert.deepEqual([info!.method, info!.path], ['GET', `/v1/transit/keys/${KEY}`]);
  assert.deepEqual([datakey!.method, datakey!.path], ['POST', `/v1/transit/datakey/plaintext/${KEY}`]);
  assert.deepEqual(datakey!.body, { context: canonicalContext(CTX).toString('base64'), bits: 256 });
  assert.equal(datakey!.headers['x-vault-token'], vault.token);
  assert.equal(datakey!.headers['x-vault-namespace'], undefined);

  assert.deepEqual(await p.unwrap(wrapped, CTX), plaintext);
  const decrypt = vault.requests.at(-1)!;
  assert.equal(decrypt.path, `/v1/transit/decrypt/${KEY}`);
  assert.deepEqual(decrypt.body, { ciphertext: wrapped.wrapped, context: canonicalContext(CTX).toString('base64') });
  await p.generateDataKey(CTX);
  assert.equal(vault.requests.filter((r) => r.method === 'GET').length, 1, 'derived is checked once per provider');
});

test('unwrap refuses another backup or object (derived key), a tampered ciphertext, a mismatched version', async (t) => {
  const { provider } = await setup(t);
  const p = provider();
  const { wrapped } = await p.generateDataKey(CTX);
  await rejectsKeyError(
    p.unwrap(wrapped, { ...CTX, backupId: 'other' }),
    new RegExp(`Vault POST /v1/transit/decrypt/${KEY} failed: HTTP 400: cipher: message authentication failed`),
    /another backup or object/,
  );
  await rejectsKeyError(p.unwrap(wrapped, { ...CTX, object: 'other/' }), /HTTP 400/);
  const body = Buffer.from(wrapped.wrapped.slice('vault:v1:'.length), 'base64');
  body[20]! ^= 1;
  await rejectsKeyError(p.unwrap({ ...wrapped, wrapped: `vault:v1:${body.toString('base64')}` }, CTX), /message authentication failed/);
  await rejectsKeyError(p.unwrap({ ...wrapped, version: '2' }, CTX), /says version "2" but its ciphertext is vault:v1/);
  await rejectsKeyError(p.unwrap({ ...wrapped, wrapped: 'v1:abc' }, CTX), /not a vault:vN: ciphertext/);
  await rejectsKeyError(p.unwrap({ ...wrapped, keyId: '..' }, CTX), /not a Vault transit key name/);
  await rejectsKeyError(p.unwrap({ ...wrapped, provider: 'local' }, CTX), /provider "local"/);
});

test('rotation: POST keys/NAME/rotate, then currentVersion is 2 and rewrap gives vault:v2 with the same key', async (t) => {
  const { vault, provider } = await setup(t);
  const p = provider();
  const { plaintext, wrapped } = await p.generateDataKey(CTX);
  assert.equal(await p.currentVersion(), '1');

  const res = await fetch(`${vault.address}/v1/transit/keys/${KEY}/rotate`, { method: 'POST', headers: { 'X-Vault-Token': vault.token } });
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as { data: { latest_version: number } }).data.latest_version, 2);

  assert.equal(await p.currentVersion(), '2');
  const again = await p.rewrap(wrapped, CTX);
  assert.equal(again.version, '2');
  assert.match(again.wrapped, /^vault:v2:/);
  assert.equal(again.keyId, KEY);
  const rewrap = vault.requests.at(-1)!;
  assert.equal(rewrap.path, `/v1/transit/rewrap/${KEY}`);
  assert.deepEqual(rewrap.body, { ciphertext: wrapped.wrapped, context: canonicalContext(CTX).toString('base64') });
  assert.deepEqual(await p.unwrap(again, CTX), plaintext);
  assert.deepEqual(await p.unwrap(wrapped, CTX), plaintext, 'version 1 still decrypts');
  assert.equal((await p.generateDataKey(CTX)).wrapped.version, '2');
  await rejectsKeyError(p.rewrap(wrapped, { ...CTX, object: 'x/' }), /rewrap.*HTTP 400.*authentication failed/);
});

test('rewrap to another configured key goes through decrypt + encrypt under the new key', async (t) => {
  const { vault, provider } = await setup(t);
  vault.createKey('ceerion-backup-2027');
  const { plaintext, wrapped } = await provider().generateDataKey(CTX);
  const p2 = provider({ keyName: 'ceerion-backup-2027' });
  const moved = await p2.rewrap(wrapped, CTX);
  assert.equal(moved.keyId, 'ceerion-backup-2027');
  assert.deepEqual(vault.requests.slice(-2).map((r) => r.path), ['/v1/transit/decrypt/ceerion-backup', '/v1/transit/encrypt/ceerion-backup-2027']);
  assert.deepEqual(await p2.unwrap(moved, CTX), plaintext);
  assert.deepEqual(await p2.unwrap(wrapped, CTX), plaintext, 'unwrap uses the key the manifest names');
});

test('a non-derived key is refused before any wrap is made, with the command to create a derived one', async (t) => {
  const { vault, provider } = await setup(t, { derived: false });
  const p = provider();
  await rejectsKeyError(p.generateDataKey(CTX), /transit\/ceerion-backup is not a derived key/, /vault write -f transit\/keys\/ceerion-backup derived=true/);
  assert.equal(vault.requests.filter((r) => r.path.includes('/datakey/')).length, 0);
});

test('token: config first, else VAULT_TOKEN; missing names VAULT_TOKEN; a wrong one is HTTP 403', async (t) => {
  const { vault, provider } = await setup(t);
  await provider({ token: '' }, { env: { VAULT_TOKEN: vault.token } }).currentVersion();
  assert.equal(vault.requests.at(-1)!.headers['x-vault-token'], vault.token);
  await provider({ token: vault.token }, { env: { VAULT_TOKEN: 'stale-env-token' } }).currentVersion();
  assert.equal(vault.requests.at(-1)!.headers['x-vault-token'], vault.token, 'the config token wins over VAULT_TOKEN');
  await rejectsKeyError(() => provider({ token: '' }, { env: {} }), /no Vault token: set VAULT_TOKEN/);
  await rejectsKeyError(() => provider({ address: '' }), /backup.keys.vault.address is empty/);
  await rejectsKeyError(provider({ token: 'wrong' }).generateDataKey(CTX), new RegExp(`GET /v1/transit/keys/${KEY} failed: HTTP 403: permission denied`));
});

test('namespace: X-Vault-Namespace is sent when configured', async (t) => {
  const { vault, provider } = await setup(t);
  vault.namespace = 'mail/prod';
  await rejectsKeyError(provider().currentVersion(), /HTTP 403/);
  assert.equal(await provider({ namespace: 'mail/prod' }).currentVersion(), '1');
  assert.equal(vault.requests.at(-1)!.headers['x-vault-namespace'], 'mail/prod');
});

test('HTTP errors carry the status and Vault\'s errors array; a slow Vault times out; a closed port is unreachable', async (t) => {
  const { vault, provider } = await setup(t);
  vault.failNext = { status: 503, errors: ['Vault is sealed', 'try later'] };
  await rejectsKeyError(provider().currentVersion(), /HTTP 503: Vault is sealed; try later/);
  vault.failNext = { status: 307, errors: [] };
  await rejectsKeyError(provider().currentVersion(), /HTTP 307 redirecting to/, /redirects are not followed/);

  vault.delayMs = 500;
  await rejectsKeyError(provider({}, { timeoutMs: 100 }).currentVersion(), /did not answer GET \/v1\/transit\/keys\/ceerion-backup within 0.1 s/);
  vault.delayMs = 0;

  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  await rejectsKeyError(provider({ address: `http://127.0.0.1:${port}` }).currentVersion(), /is unreachable/, /ECONNREFUSED/);
});

test('a data key that is not 32 bytes is refused', async (t) => {
  const { vault, provider } = await setup(t);
  vault.plaintextBytes = 16;
  await rejectsKeyError(provider().generateDataKey(CTX), /Vault transit key ceerion-backup returned a 16-byte data key; data keys are 32 bytes/);
});

test('createKeyProvider: vault from config with an injected fetch and env', async (t) => {
  const { vault } = await setup(t);
  let calls = 0;
  const counting: typeof fetch = (input, init) => {
    calls++;
    return fetch(input, init);
  };
  const keys = backupSchema.parse({ keys: { provider: 'vault', vault: { address: vault.address } } }).keys;
  const p = createKeyProvider(keys, { env: { VAULT_TOKEN: vault.token }, fetch: counting });
  assert.equal(p.name, 'vault');
  const { plaintext, wrapped } = await p.generateDataKey(CTX);
  assert.deepEqual(await p.unwrap(wrapped, CTX), plaintext);
  assert.equal(calls, 3);
});
