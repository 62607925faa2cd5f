// An S3-compatible server for tests: s3rver (a Koa app storing objects as files) in this process,
// on 127.0.0.1 and a free port, with its own temp directory and one bucket created up front.
// Tests of the S3 store run against it so that the real SDK (request building, XML parsing, errors) is exercised.
//
// What s3rver 3.7.1 does differently from AWS (found by test/backup/storage/s3rver.test.ts):
// - ListObjectsV2 answers 500 for every truncated page on Node ≥ 17 (see s3-store.ts, list()).
// - AbortMultipartUpload (DELETE ?uploadId) answers 405 MethodNotAllowed; the parts of an aborted
//   upload stay in the bucket's `._S3rver_uploads` folder, invisible to GET and LIST.
// - ListObjects (v1) lists in the order of its directory walk, not key order (`p/a/b` before `p/a`).
// - It knows only the access key id S3RVER (config below) and does not verify V4 signatures.
// - Checksums: it ignores Content-MD5 and x-amz-checksum-* headers (so DeleteObjects works), but
//   stores an aws-chunked body, the SDK's default for a streamed upload, framing and all: hence
//   the store's WHEN_REQUIRED.
//
// close() stops the server (dropping kept-alive client sockets) and removes the directory; a
// directory left by a test process that dies first is removed at exit.
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { backupSchema, type BackupConfig } from '../../core/config/backup.ts';

/** The part of s3rver's API used here (the package ships no types). */
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: Server;
}
type S3rverConstructor = new (options: {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: { name: string }[];
  /** Off: with it, s3rver treats requests to non-IP hostnames as virtual-host style. */
  vhostBuckets: boolean;
}) => S3rverInstance;

// s3rver is CommonJS without types; require() gives the class itself (what `import S3rver from` would).
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;

export interface TestS3 {
  /** `http://127.0.0.1:PORT`, for `backup.s3.endpoint`. */
  endpoint: string;
  bucket: string;
  /** s3rver's storage directory (removed by close()). */
  dir: string;
  /** A complete `backup.s3` section pointing at this server (path style, s3rver's keys). */
  config: BackupConfig['s3'];
  /** Stops the server and removes the directory. */
  close(): Promise<void>;
}

/** s3rver's built-in credentials: the only key pair its signature check accepts. */
export const S3RVER_ACCESS_KEY = 'S3RVER';

const dirs = new Set<string>();
process.once('exit', () => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

export async function startS3rver(opts: { bucket?: string } = {}): Promise<TestS3> {
  const bucket = opts.bucket ?? 'ceerion-test';
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-s3rver-'));
  dirs.add(dir);
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: [{ name: bucket }],
    vhostBuckets: false,
  });
  let address: AddressInfo;
  try {
    address = await server.run();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    dirs.delete(dir);
    throw err;
  }
  const endpoint = `http://127.0.0.1:${address.port}`;
  const config: BackupConfig['s3'] = {
    ...backupSchema.parse({}).s3,
    endpoint,
    bucket,
    region: 'us-east-1',
    forcePathStyle: true,
    accessKeyId: S3RVER_ACCESS_KEY,
    secretAccessKey: S3RVER_ACCESS_KEY,
    // Failures in tests should show at once, not after the SDK's backoff.
    maxAttempts: 1,
  };
  let closed: Promise<void> | undefined;
  return {
    endpoint,
    bucket,
    dir,
    config,
    close() {
      closed ??= (async () => {
        const done = server.close();
        // close() waits for open connections; the SDK keeps sockets alive between requests.
        server.httpServer?.closeAllConnections();
        await done;
        await rm(dir, { recursive: true, force: true });
        dirs.delete(dir);
      })();
      return closed;
    },
  };
}
