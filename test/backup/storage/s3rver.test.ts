// What s3rver 3.7.1 (the S3 server of our tests) does and does not do, pinned down with the raw
// SDK, so that S3Store's workarounds have a reason on record and we notice when s3rver changes.
// Also the harness itself: it starts, and close() leaves nothing behind.
import {
  AbortMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { createS3Client, S3Store } from '../../../backup/storage/s3-store.ts';
import { startS3rver, type TestS3 } from '../../harness/s3rver.ts';
import { MiB } from './helpers.ts';

const UPLOADS_DIR = '._S3rver_uploads';

describe('s3rver 3.7.1 as seen by the SDK', () => {
  let s3: TestS3;
  let client: S3Client;
  let Bucket: string;
  before(async () => {
    s3 = await startS3rver();
    client = createS3Client(s3.config);
    Bucket = s3.bucket;
    for (const Key of ['p/a', 'p/a-b', 'p/a/b', 'p/c', 'p/d', 'q/x']) await client.send(new PutObjectCommand({ Bucket, Key, Body: Key }));
  });
  after(async () => {
    client.destroy();
    await s3.close();
  });

  it('ListObjectsV2 answers 500 for every truncated page (its continuation token needs DES, gone from OpenSSL 3)', async () => {
    const whole = await client.send(new ListObjectsV2Command({ Bucket, Prefix: 'q/' }));
    assert.deepEqual(
      whole.Contents?.map((o) => o.Key),
      ['q/x'],
    );
    for (const StartAfter of [undefined, 'p/a']) {
      await assert.rejects(client.send(new ListObjectsV2Command({ Bucket, Prefix: 'p/', MaxKeys: 2, StartAfter })), (err: Error) => {
        assert.equal(err.name, 'InternalError');
        assert.equal((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode, 500);
        return true;
      });
    }
  });

  it('ListObjects (v1) pages with Marker, sends no NextMarker, and lists in directory-walk order, not key order', async () => {
    const first = await client.send(new ListObjectsCommand({ Bucket, Prefix: 'p/', MaxKeys: 2 }));
    assert.equal(first.IsTruncated, true);
    assert.equal(first.NextMarker, undefined);
    // Key order would be p/a, p/a-b, p/a/b: the folder p/a/ comes first on disk.
    assert.deepEqual(
      first.Contents?.map((o) => o.Key),
      ['p/a/b', 'p/a-b'],
    );
    // Marker = last key seen: p/a/b comes again (it sorts after p/a-b) and p/a is lost.
    const second = await client.send(new ListObjectsCommand({ Bucket, Prefix: 'p/', MaxKeys: 2, Marker: 'p/a-b' }));
    assert.deepEqual(
      second.Contents?.map((o) => o.Key),
      ['p/a/b', 'p/c'],
    );
  });

  it('S3Store.list refuses such a listing instead of yielding keys out of order', async () => {
    const store = new S3Store(s3.config, { client });
    const seen: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const o of store.list('p/')) seen.push(o.key);
      })(),
      /ListObjects of s3:\/\/ceerion-test\/p\/ .*no progress: after p\/a\/b the server listed p\/a-b/,
    );
    assert.deepEqual(seen, ['p/a/b']);
    // A layout without a folder next to a same-named key lists fine.
    const keys: string[] = [];
    for await (const o of new S3Store(s3.config, { client, pageSize: 1 }).list('q/')) keys.push(o.key);
    assert.deepEqual(keys, ['q/x']);
  });

  it('DeleteObjects works: s3rver ignores the checksum header the SDK must send, and missing keys', async () => {
    const sent: Record<string, string>[] = [];
    const spy = createS3Client(s3.config);
    spy.middlewareStack.add(
      (next) => async (args) => {
        sent.push({ ...(args.request as { headers: Record<string, string> }).headers });
        return next(args);
      },
      { step: 'finalizeRequest', name: 'spyHeaders' },
    );
    await spy.send(new PutObjectCommand({ Bucket, Key: 'del/one', Body: 'x' }));
    const res = await spy.send(new DeleteObjectsCommand({ Bucket, Delete: { Objects: [{ Key: 'del/one' }, { Key: 'del/never' }] } }));
    spy.destroy();
    assert.deepEqual(res.Errors ?? [], []);
    const del = sent.at(-1)!;
    assert.ok('x-amz-checksum-crc32' in del || 'content-md5' in del, `a checksum header: ${Object.keys(del).join(', ')}`);
    await assert.rejects(client.send(new HeadObjectCommand({ Bucket, Key: 'del/one' })), { name: 'NotFound' });
  });

  it('AbortMultipartUpload is 405 MethodNotAllowed; the parts stay in ._S3rver_uploads, invisible', async () => {
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket, Key: 'mp/aborted' }));
    await client.send(new UploadPartCommand({ Bucket, Key: 'mp/aborted', UploadId, PartNumber: 1, Body: Buffer.alloc(5 * MiB) }));
    await assert.rejects(client.send(new AbortMultipartUploadCommand({ Bucket, Key: 'mp/aborted', UploadId })), (err: Error) => {
      assert.equal(err.name, 'MethodNotAllowed');
      assert.equal((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode, 405);
      return true;
    });
    assert.ok(existsSync(path.join(s3.dir, Bucket, UPLOADS_DIR, UploadId!, '1')));
    const listed = await client.send(new ListObjectsCommand({ Bucket, Prefix: 'mp/' }));
    assert.equal(listed.Contents, undefined);
  });

  it('with the SDK default checksums, a streamed PutObject stores the aws-chunked framing as the object', async () => {
    const defaults = new S3Client({
      endpoint: s3.endpoint,
      region: s3.config.region,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.config.accessKeyId, secretAccessKey: s3.config.secretAccessKey },
    });
    await defaults.send(new PutObjectCommand({ Bucket, Key: 'cs/stream', Body: Readable.from([Buffer.from('hello')]), ContentLength: 5 }));
    defaults.destroy();
    const stored = await (await client.send(new GetObjectCommand({ Bucket, Key: 'cs/stream' }))).Body!.transformToString();
    assert.match(stored, /^5\r\nhello\r\n0\r\nx-amz-checksum-crc32:/);
    // With WHEN_REQUIRED (createS3Client) the same upload stores the bytes sent.
    await client.send(new PutObjectCommand({ Bucket, Key: 'cs/stream', Body: Readable.from([Buffer.from('hello')]), ContentLength: 5 }));
    assert.equal(await (await client.send(new GetObjectCommand({ Bucket, Key: 'cs/stream' }))).Body!.transformToString(), 'hello');
  });

  it('HeadObject of a missing key is a bare 404 (NotFound), GetObject a NoSuchKey', async () => {
    await assert.rejects(client.send(new HeadObjectCommand({ Bucket, Key: 'nope' })), { name: 'NotFound' });
    await assert.rejects(client.send(new GetObjectCommand({ Bucket, Key: 'nope' })), { name: 'NoSuchKey' });
  });
});

describe('startS3rver', () => {
  it('serves on 127.0.0.1 with the bucket made, and close() stops it and removes the directory', async () => {
    const s3 = await startS3rver({ bucket: 'harness-check' });
    assert.match(s3.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(s3.config.endpoint, s3.endpoint);
    assert.ok(readdirSync(s3.dir).includes('harness-check'));
    const client = createS3Client(s3.config);
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'k', Body: 'v' }));
    // A kept-alive socket must not hold close() up.
    await s3.close();
    await s3.close();
    assert.equal(existsSync(s3.dir), false);
    await assert.rejects(fetch(s3.endpoint), /fetch failed/);
    client.destroy();
  });
});
