/**
 * createKeyProvider: the config picks the provider, the deps (env, fetch, KMS client) are used as
 * given, and misconfiguration fails at creation with a KeyError. Each provider's behaviour is tested
 * in its own file.
 */
import assert from 'node:assert/strict';
import { KMSClient } from '@aws-sdk/client-kms';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { backupSchema, type BackupConfig } from '../../../core/config/backup.ts';
import { KeyError, type KeyContext } from '../../../backup/contracts.ts';
import { createKeyProvider, initKeyring } from '../../../backup/keys/index.ts';
import { FakeKms } from './fake-kms.ts';

const CTX: KeyContext = { backupId: 'b1', object: 'backups/b1/' };

function keysConfig(keys: unknown): BackupConfig['keys'] {
  return backupSchema.parse({ keys }).keys;
}

test('local is the default provider and reads the configured keyring', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ceerion-keys-index-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const keyring = path.join(dir, 'keyring.json');
  assert.throws(() => createKeyProvider(keysConfig({ local: { keyring } })), (err: unknown) => err instanceof KeyError && /ceerion backup keyring init/.test(err.message));
  await initKeyring(keyring);
  const p = createKeyProvider(keysConfig({ local: { keyring } }));
  assert.equal(p.name, 'local');
  const { plaintext, wrapped } = await p.generateDataKey(CTX);
  assert.deepEqual(await p.unwrap(wrapped, CTX), plaintext);
});

test('aws-kms uses an injected client as is', async (t) => {
  const kms = await FakeKms.start();
  const client = new KMSClient({ region: kms.region, endpoint: kms.endpoint, credentials: { accessKeyId: 'AKIDINJECTED', secretAccessKey: 's' } });
  t.after(async () => {
    client.destroy();
    await kms.close();
  });
  const arn = kms.createKey();
  // The config's region and endpoint are unusable on purpose: the injected client must be the one used.
  const p = createKeyProvider(keysConfig({ provider: 'aws-kms', awsKms: { keyId: arn, region: 'nowhere-1' } }), { kmsClient: client, env: {} });
  assert.equal(p.name, 'aws-kms');
  const { plaintext, wrapped } = await p.generateDataKey(CTX);
  assert.deepEqual(await p.unwrap(wrapped, CTX), plaintext);
  assert.match(String(kms.calls[0]!.headers.authorization), /Credential=AKIDINJECTED\//);
});

test('misconfiguration fails at creation with a KeyError', () => {
  const cases: [unknown, RegExp][] = [
    [{ provider: 'aws-kms', awsKms: { keyId: '', region: 'eu-west-1' } }, /backup.keys.awsKms.keyId is empty/],
    [{ provider: 'aws-kms', awsKms: { keyId: 'alias/x' } }, /needs a region/],
    [{ provider: 'vault' }, /backup.keys.vault.address is empty/],
    [{ provider: 'vault', vault: { address: 'http://127.0.0.1:8200' } }, /no Vault token: set VAULT_TOKEN/],
  ];
  for (const [keys, re] of cases) {
    assert.throws(() => createKeyProvider(keysConfig(keys), { env: {} }), (err: unknown) => err instanceof KeyError && re.test(err.message));
  }
});
