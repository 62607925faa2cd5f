/**
 * The AWS KMS provider through the real @aws-sdk/client-kms, pointed at the in-process JSON 1.1
 * protocol fake (fake-kms.ts; see there for what it does not cover).
 */
import assert from 'node:assert/strict';
import { KMSClient } from '@aws-sdk/client-kms';
import { test, type TestContext } from 'node:test';
import { backupSchema } from '../../../core/config/backup.ts';
import { KeyError, type KeyContext, type KeyProvider } from '../../../backup/contracts.ts';
import { createAwsKmsKeyProvider, createKmsClient } from '../../../backup/keys/aws-kms.ts';
import { createKeyProvider } from '../../../backup/keys/index.ts';
import { FakeKms } from './fake-kms.ts';
import { rejectsKeyError } from './assert-key-error.ts';

const CTX: KeyContext = { backupId: '20261121T020000Z-3f9a1c', object: 'backups/20261121T020000Z-3f9a1c/' };
const EC = { 'ceerion:backup-id': CTX.backupId, 'ceerion:object': CTX.object };

async function setup(t: TestContext): Promise<{ kms: FakeKms; client: KMSClient; arn: string; provider: (keyId: string) => KeyProvider }> {
  const kms = await FakeKms.start();
  const client = new KMSClient({
    region: kms.region,
    endpoint: kms.endpoint,
    credentials: { accessKeyId: 'AKIDFAKEFAKEFAKE', secretAccessKey: 'fake-secret' },
    maxAttempts: 1,
  });
  t.after(async () => {
    client.destroy();
    await kms.close();
  });
  const arn = kms.createKey('ceerion-backup');
  const provider = (keyId: string) => createAwsKmsKeyProvider({ keyId, region: kms.region, endpoint: kms.endpoint }, client);
  return { kms, client, arn, provider };
}

test('generateDataKey: AES_256 with the backup context, signed request; wrapped names the ARN even for an alias', async (t) => {
  const { kms, arn, provider } = await setup(t);
  const p = provider('alias/ceerion-backup');
  const { plaintext, wrapped } = await p.generateDataKey(CTX);
  assert.equal(plaintext.length, 32);
  assert.deepEqual({ ...wrapped, wrapped: '' }, { provider: 'aws-kms', keyId: arn, version: 'kms', wrapped: '' });
  assert.equal(kms.inspect(wrapped.wrapped).arn, arn);

  const call = kms.calls.at(-1)!;
  assert.equal(call.target, 'GenerateDataKey');
  assert.deepEqual(call.body, { KeyId: 'alias/ceerion-backup', KeySpec: 'AES_256', EncryptionContext: EC });
  assert.match(String(call.headers.authorization), /^AWS4-HMAC-SHA256 Credential=AKIDFAKEFAKEFAKE\/\d{8}\/eu-west-1\/kms\/aws4_request/);
  assert.equal(call.headers['content-type'], 'application/x-amz-json-1.1');
  assert.equal(await p.currentVersion(), 'alias/ceerion-backup');
});

test('unwrap: Decrypt with the recorded KeyId and the same context gives the data key back', async (t) => {
  const { kms, arn, provider } = await setup(t);
  const p = provider(arn);
  const { plaintext, wrapped } = await p.generateDataKey(CTX);
  assert.deepEqual(await p.unwrap(wrapped, CTX), plaintext);
  const call = kms.calls.at(-1)!;
  assert.equal(call.target, 'Decrypt');
  assert.deepEqual(call.body, { CiphertextBlob: wrapped.wrapped, KeyId: arn, EncryptionContext: EC });
});

test('unwrap refuses another backup or object, a tampered blob, another key, another provider', async (t) => {
  const { kms, arn, provider } = await setup(t);
  const p = provider(arn);
  const { wrapped } = await p.generateDataKey(CTX);
  await rejectsKeyError(p.unwrap(wrapped, { ...CTX, backupId: 'other' }), /AWS KMS Decrypt with key arn:aws:kms:/, /failed: InvalidCiphertextException \(the wrapped key belongs to another backup or object/);
  await rejectsKeyError(p.unwrap(wrapped, { ...CTX, object: 'other/' }), /InvalidCiphertextException/);
  const blob = Buffer.from(wrapped.wrapped, 'base64');
  blob[blob.length - 20]! ^= 1;
  await rejectsKeyError(p.unwrap({ ...wrapped, wrapped: blob.toString('base64') }, CTX), /InvalidCiphertextException/);
  const other = kms.createKey();
  await rejectsKeyError(p.unwrap({ ...wrapped, keyId: other }, CTX), new RegExp(`key ${other} failed: IncorrectKeyException`), /different KMS key/);
  await rejectsKeyError(p.unwrap({ ...wrapped, wrapped: '' }, CTX), /is empty/);
  await rejectsKeyError(p.unwrap({ ...wrapped, provider: 'local' }, CTX), /provider "local"/);
});

test('rewrap: ReEncrypt with source = destination context picks up rotated material and can move to a new key', async (t) => {
  const { kms, arn, provider } = await setup(t);
  const p = provider(arn);
  const { plaintext, wrapped } = await p.generateDataKey(CTX);
  assert.equal(kms.inspect(wrapped.wrapped).material, 0);

  kms.rotate(arn);
  const again = await p.rewrap(wrapped, CTX);
  assert.deepEqual({ ...again, wrapped: '' }, { provider: 'aws-kms', keyId: arn, version: 'kms', wrapped: '' });
  assert.equal(kms.inspect(again.wrapped).material, 1);
  const call = kms.calls.at(-1)!;
  assert.equal(call.target, 'ReEncrypt');
  assert.deepEqual(call.body, {
    CiphertextBlob: wrapped.wrapped,
    SourceKeyId: arn,
    SourceEncryptionContext: EC,
    DestinationKeyId: arn,
    DestinationEncryptionContext: EC,
  });
  assert.deepEqual(await p.unwrap(again, CTX), plaintext);
  assert.deepEqual(await p.unwrap(wrapped, CTX), plaintext, 'old material still decrypts');

  const newArn = kms.createKey('ceerion-backup-2026');
  const moved = await provider('alias/ceerion-backup-2026').rewrap(wrapped, CTX);
  assert.equal(moved.keyId, newArn);
  assert.deepEqual(await p.unwrap(moved, CTX), plaintext, 'unwrap follows the key the manifest names');
  await rejectsKeyError(p.rewrap(wrapped, { ...CTX, backupId: 'x' }), /AWS KMS ReEncrypt/, /InvalidCiphertextException/);
});

test('SDK errors become KeyError with the key id and the SDK message', async (t) => {
  const { provider } = await setup(t);
  await rejectsKeyError(provider('alias/missing').generateDataKey(CTX), /AWS KMS GenerateDataKey with key alias\/missing failed: NotFoundException: Alias .*alias\/missing is not found/);
});

test('a data key that is not 32 bytes is refused, on generate and on unwrap', async (t) => {
  const { kms, arn, provider } = await setup(t);
  const p = provider(arn);
  const { wrapped } = await p.generateDataKey(CTX);
  kms.plaintextBytes = 16;
  await rejectsKeyError(p.generateDataKey(CTX), /returned a 16-byte data key; data keys are 32 bytes/);
  await rejectsKeyError(p.unwrap(wrapped, CTX), /returned a 16-byte data key/);
});

test('createKeyProvider builds the client from config: endpoint, region (or AWS_REGION), default credential chain', async (t) => {
  const kms = await FakeKms.start();
  t.after(() => kms.close());
  const arn = kms.createKey();
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  process.env.AWS_ACCESS_KEY_ID = 'AKIDFROMENV';
  process.env.AWS_SECRET_ACCESS_KEY = 'secret-from-env';
  t.after(() => {
    for (const [k, v] of [['AWS_ACCESS_KEY_ID', saved.id], ['AWS_SECRET_ACCESS_KEY', saved.secret]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  const keys = backupSchema.parse({ keys: { provider: 'aws-kms', awsKms: { keyId: arn, endpoint: kms.endpoint } } }).keys;
  const p = createKeyProvider(keys, { env: { AWS_REGION: 'eu-west-1' } });
  const { plaintext, wrapped } = await p.generateDataKey(CTX);
  assert.deepEqual(await p.unwrap(wrapped, CTX), plaintext);
  assert.match(String(kms.calls[0]!.headers.authorization), /Credential=AKIDFROMENV\/\d{8}\/eu-west-1\/kms\//);

  await rejectsKeyError(() => createKmsClient({ keyId: arn, region: '', endpoint: '' }, {}), /set backup.keys.awsKms.region or AWS_REGION/);
  const client = createKmsClient({ keyId: '', region: 'eu-west-1', endpoint: '' }, {});
  t.after(() => client.destroy());
  await rejectsKeyError(() => createAwsKmsKeyProvider({ keyId: '', region: 'eu-west-1', endpoint: '' }, client), /backup.keys.awsKms.keyId is empty/);
});
