// S3Store beyond the shared contract: client settings, part sizes on the wire, failed and aborted
// multipart uploads on a server without AbortMultipartUpload (s3rver), errors that name the
// operation and object, the list guard, and the per-key delete fallback.
import { S3Client } from '@aws-sdk/client-s3';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ObjectNotFoundError } from '../../../backup/contracts.ts';
import { createObjectStore } from '../../../backup/storage/index.ts';
import { createS3Client, S3Store, S3StoreError } from '../../../backup/storage/s3-store.ts';
import { startS3rver, type TestS3 } from '../../harness/s3rver.ts';
import { MiB, randomData, readAll, recordCommands, recordingLog, stalledStream, streamOf } from './helpers.ts';

describe('createS3Client', () => {
  it('configures path style, endpoint, region, attempts and checksums only when required', async () => {
    const s3 = await startS3rver();
    try {
      const client = createS3Client({ ...s3.config, maxAttempts: 7 });
      assert.equal(client.config.forcePathStyle, true);
      assert.equal(await client.config.region(), 'us-east-1');
      assert.equal(await client.config.maxAttempts(), 7);
      assert.equal(await client.config.requestChecksumCalculation(), 'WHEN_REQUIRED');
      assert.equal(await client.config.responseChecksumValidation(), 'WHEN_REQUIRED');
      assert.equal((await client.config.credentials()).accessKeyId, 'S3RVER');
      client.destroy();
    } finally {
      await s3.close();
    }
  });

  it('refuses half a key pair', () => {
    const s3 = { endpoint: '', region: 'us-east-1', bucket: 'b-b', prefix: '', forcePathStyle: true, partBytes: 5 * MiB, queueSize: 1, maxAttempts: 1 };
    assert.throws(() => createS3Client({ ...s3, accessKeyId: 'AKIA', secretAccessKey: '' }), /both accessKeyId and secretAccessKey/);
    // Neither: the SDK's default chain, resolved on the first request.
    createS3Client({ ...s3, accessKeyId: '', secretAccessKey: '' }).destroy();
  });
});

describe('S3Store on s3rver', () => {
  let s3: TestS3;
  before(async () => {
    s3 = await startS3rver();
  });
  after(() => s3.close());

  /** A store with its own client (recorded) and log. */
  function open(over: Partial<TestS3['config']> = {}, rewrite?: Parameters<typeof recordCommands>[1]) {
    const client = createS3Client(s3.config);
    const rec = recordCommands(client, rewrite);
    const { log, lines } = recordingLog();
    const store = new S3Store({ ...s3.config, partBytes: 5 * MiB, ...over }, { client, log, pageSize: 5 });
    after(() => client.destroy());
    return { store, rec, lines, client };
  }

  it('describes itself by bucket, prefix and endpoint', () => {
    const store = createObjectStore(s3.config);
    assert.equal(store.description, `s3://ceerion-test/backups/ at ${s3.endpoint}`);
    store.close();
    const client = new S3Client({});
    assert.equal(createObjectStore({ ...s3.config, endpoint: '', region: 'eu-central-1' }, { client }).description, 's3://ceerion-test/backups/ at AWS eu-central-1');
    client.destroy();
  });

  it('sizes parts from the estimate: 12 MiB in 5 MiB parts is 3 parts, with a 60 GiB estimate 2 parts of 8 MiB', async () => {
    const { store, rec } = open();
    const data = randomData(12 * MiB);
    await store.put('parts/small-estimate', streamOf(data));
    assert.equal(rec.count('UploadPartCommand'), 3);
    await store.put('parts/large-estimate', streamOf(data), { expectedBytes: 60 * 1024 * MiB });
    assert.equal(rec.count('UploadPartCommand'), 5);
    assert.equal(rec.count('CompleteMultipartUploadCommand'), 2);
    assert.ok((await readAll(await store.get('parts/large-estimate'))).equals(data));
    // Below one part: a single PutObject.
    await store.put('parts/one', randomData(MiB));
    assert.equal(rec.count('PutObjectCommand'), 1);
  });

  it('a body error after a part was sent: the original error, named; the failed abort logged; nothing visible', async () => {
    const { store, rec, lines } = open();
    const body = stalledStream(randomData(6 * MiB));
    const putting = store.put('fail/db.dump', body, { onProgress: () => body.destroy(new Error('pg_dump exited with code 1')) });
    await assert.rejects(putting, (err: Error) => {
      assert.ok(err instanceof S3StoreError);
      assert.equal(err.operation, 'upload');
      assert.equal(err.key, 'fail/db.dump');
      assert.equal(err.message, `S3 upload of s3://ceerion-test/fail/db.dump at ${s3.endpoint} failed: pg_dump exited with code 1`);
      return true;
    });
    assert.equal(rec.count('AbortMultipartUploadCommand'), 1);
    const warn = lines.find((l) => l.level === 40);
    assert.ok(warn, 'the abort failure is logged');
    assert.match(warn.msg, /could not abort the failed multipart upload/);
    assert.equal(warn.key, 'fail/db.dump');
    assert.match(String(warn.err), /MethodNotAllowed \(HTTP 405\)/);
    assert.match(String(warn.reason), /pg_dump exited with code 1/);
    assert.equal(await store.head('fail/db.dump'), undefined);
    // s3rver keeps the parts (it cannot abort); AWS would drop them.
    assert.ok(readdirSync(path.join(s3.dir, s3.bucket, '._S3rver_uploads', String(warn.uploadId))).length > 0);
  });

  it('an abort while the body is stalled settles at once with AbortError (the reason as cause) and leaves nothing', async () => {
    const { store, rec, lines } = open();
    const body = stalledStream(randomData(6 * MiB));
    const abort = new AbortController();
    const reason = new Error('backup cancelled');
    const putting = store.put('abort/maildir.tar', body, { signal: abort.signal, onProgress: () => abort.abort(reason) });
    await assert.rejects(putting, (err: Error) => {
      assert.equal(err.name, 'AbortError');
      assert.equal(err.message, 'S3 upload of s3://ceerion-test/abort/maildir.tar aborted');
      assert.equal(err.cause, reason);
      return true;
    });
    assert.ok(body.destroyed);
    assert.equal(rec.count('AbortMultipartUploadCommand'), 1);
    assert.ok(lines.some((l) => l.level === 40 && l.key === 'abort/maildir.tar'));
    assert.equal(await store.head('abort/maildir.tar'), undefined);
  });

  it('errors name the operation, bucket and key; a missing bucket is no missing object', async () => {
    const { store } = open({ bucket: 'no-such-bucket' });
    const where = `s3://no-such-bucket/k1 at ${s3.endpoint}`;
    await assert.rejects(store.put('k1', Buffer.from('x')), { name: 'S3StoreError', message: `S3 upload of ${where} failed: NoSuchBucket (HTTP 404): The specified bucket does not exist` });
    // A stream body nobody listens to for errors is ended without one (no uncaught 'error').
    const body = streamOf(Buffer.from('x'));
    await assert.rejects(store.put('k1', body), /NoSuchBucket/);
    assert.ok(body.destroyed);
    await assert.rejects(store.get('k1'), (err: Error) => {
      assert.ok(err instanceof S3StoreError && !(err instanceof ObjectNotFoundError));
      assert.match(err.message, new RegExp(`^S3 GetObject of ${where.replace(/[/.]/g, '\\$&')} failed: NoSuchBucket`));
      return true;
    });
    await assert.rejects(store.list('pre/')[Symbol.asyncIterator]().next(), /^S3StoreError: S3 ListObjects of s3:\/\/no-such-bucket\/pre\/ .*NoSuchBucket/);
    await assert.rejects(store.delete(['k1', 'k2']), /S3 DeleteObjects of s3:\/\/no-such-bucket\/k1 .*NoSuchBucket/);
  });

  it('an unreachable server is an S3StoreError naming the endpoint', async () => {
    const dead = new S3Store({ ...s3.config, endpoint: 'http://127.0.0.1:9' });
    await assert.rejects(dead.head('k'), /^S3StoreError: S3 HeadObject of s3:\/\/ceerion-test\/k at http:\/\/127\.0\.0\.1:9 failed: .*ECONNREFUSED/);
    dead.close();
  });

  it('list stops with an error when the server ignores Marker (the same page forever)', async () => {
    const { store, rec } = open({}, (name, input) => (name === 'ListObjectsCommand' ? { ...input, Marker: undefined } : undefined));
    for (let i = 0; i < 7; i++) await store.put(`loop/k${i}`, Buffer.from('x'));
    const seen: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const o of store.list('loop/')) seen.push(o.key);
      })(),
      /ListObjects of s3:\/\/ceerion-test\/loop\/ .*no progress: after loop\/k4 the server listed loop\/k0/,
    );
    assert.deepEqual(seen, ['loop/k0', 'loop/k1', 'loop/k2', 'loop/k3', 'loop/k4']);
    assert.equal(rec.count('ListObjectsCommand'), 2);
  });

  it('falls back to DeleteObject per key when the server refuses DeleteObjects, and stays there', async () => {
    const refuse = Object.assign(new Error('DeleteObjects requires one valid Content-MD5 header'), { name: 'InvalidRequest', $metadata: { httpStatusCode: 400 } });
    const { store, rec, lines } = open({}, (name) => {
      if (name === 'DeleteObjectsCommand') throw refuse;
    });
    for (const k of ['a', 'b', 'c']) await store.put(`fallback/${k}`, Buffer.from(k));
    await store.delete(['fallback/a', 'fallback/b', 'fallback/missing']);
    await store.delete(['fallback/c']);
    assert.equal(rec.count('DeleteObjectsCommand'), 1);
    assert.equal(rec.count('DeleteObjectCommand'), 4);
    assert.equal(await store.head('fallback/a'), undefined);
    assert.equal(await store.head('fallback/c'), undefined);
    assert.equal(lines.filter((l) => /refused DeleteObjects/.test(l.msg)).length, 1);
  });

  it('a DeleteObjects that reports per-key errors fails, naming the first key', async () => {
    const { store, client } = open();
    client.middlewareStack.add(
      (next, context) => async (args) =>
        context.commandName === 'DeleteObjectsCommand'
          ? { output: { $metadata: {}, Errors: [{ Key: 'x/1', Code: 'AccessDenied', Message: 'Access Denied' }, { Key: 'x/2', Code: 'AccessDenied' }] }, response: {} }
          : next(args),
      { step: 'initialize', name: 'fakeDeleteErrors' },
    );
    await assert.rejects(store.delete(['x/1', 'x/2']), { message: `S3 DeleteObjects of s3://ceerion-test/x/1 at ${s3.endpoint} failed: AccessDenied: Access Denied (and 1 more keys)` });
  });

  it('refuses a list page size outside 1..1000', () => {
    assert.throws(() => new S3Store(s3.config, { client: new S3Client({}), pageSize: 1001 }), RangeError);
    assert.throws(() => new S3Store(s3.config, { client: new S3Client({}), pageSize: 0 }), RangeError);
  });

  it('close() destroys only a client the store built', async () => {
    const { store } = open();
    store.close();
    // The injected client still works.
    await store.put('close/still-works', Buffer.from('x'));
    assert.equal((await store.head('close/still-works'))?.size, 1);
  });
});
