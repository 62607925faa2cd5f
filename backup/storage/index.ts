/**
 * The backup's object store: S3 (or an S3-compatible server) from `backup.s3`. Tests use
 * MemoryStore, or S3Store on s3rver (test/harness/s3rver.ts).
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { BackupConfig } from '../../core/config/backup.ts';
import type { Logger } from '../../core/log.ts';
import { S3Store } from './s3-store.ts';

export { S3Store, S3StoreError, createS3Client, type S3StoreDeps } from './s3-store.ts';
export { MemoryStore, type MemoryStoreOptions, type MemoryStoreCall } from './memory-store.ts';
export { partSizeFor, maxObjectBytes, MIN_PART_BYTES, MAX_PART_BYTES, MAX_PARTS } from './part-size.ts';

/**
 * The store for `backup.s3`. With no client given it builds one (credentials from the config,
 * else the SDK's default chain); call close() on the store when done to release its sockets.
 */
export function createObjectStore(config: BackupConfig['s3'], deps: { client?: S3Client; log?: Logger } = {}): S3Store {
  return new S3Store(config, deps);
}
