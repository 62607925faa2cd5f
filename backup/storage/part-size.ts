/**
 * Multipart part size for an upload. S3 allows at most 10,000 parts per object, each between 5 MiB
 * (except the last) and 5 GiB, and a part size cannot change once an upload has started. So the
 * size is chosen up front from the caller's estimate, with headroom because the estimate (database
 * size, maildir bytes) is taken before compression and encryption and can be exceeded.
 */

export const MiB = 1024 * 1024;
/** S3's smallest part (all parts but the last). */
export const MIN_PART_BYTES = 5 * MiB;
/** S3's largest part. */
export const MAX_PART_BYTES = 5 * 1024 * MiB;
/** S3's most parts per multipart upload. */
export const MAX_PARTS = 10_000;
/** The estimate is raised by this much before sizing parts (a 25 % overrun still fits). */
export const HEADROOM = 1.25;

/**
 * The smallest multiple of 1 MiB that is ≥ minPartBytes and lets expectedBytes × 1.25 fit in
 * 10,000 parts, never above 5 GiB. Without an estimate it is minPartBytes rounded up to 1 MiB,
 * which caps the object at maxObjectBytes(part) (16 MiB parts, the default: 156.25 GiB); an
 * estimate beyond 5 GiB × 10,000 / 1.25 gets 5 GiB parts and the upload fails if it really grows
 * past 10,000 parts.
 */
export function partSizeFor(expectedBytes: number | undefined, minPartBytes: number): number {
  if (!Number.isFinite(minPartBytes) || minPartBytes < MIN_PART_BYTES || minPartBytes > MAX_PART_BYTES) {
    throw new RangeError(`minimum part size ${minPartBytes} is outside S3's ${MIN_PART_BYTES}..${MAX_PART_BYTES} bytes`);
  }
  if (expectedBytes !== undefined && !(Number.isFinite(expectedBytes) && expectedBytes >= 0)) {
    throw new RangeError(`expected object size ${expectedBytes} is not a byte count`);
  }
  const roundUp = (n: number) => Math.ceil(n / MiB) * MiB;
  let part = roundUp(minPartBytes);
  if (expectedBytes !== undefined) part = Math.max(part, roundUp((expectedBytes * HEADROOM) / MAX_PARTS));
  return Math.min(part, MAX_PART_BYTES);
}

/** The largest object an upload with this part size can store. */
export function maxObjectBytes(partBytes: number): number {
  return partBytes * MAX_PARTS;
}

/**
 * Parts in flight for a part size: lib-storage buffers every queued part, so memory is about
 * partBytes × queueSize. The configured queue is sized for the configured part; when a huge
 * object needs bigger parts, fewer are uploaded at once so memory stays within the same budget
 * (at least one: a part of a multi-terabyte dump is its own floor).
 */
export function queueSizeFor(partBytes: number, configuredPartBytes: number, configuredQueue: number): number {
  return Math.max(1, Math.min(configuredQueue, Math.floor((configuredPartBytes * configuredQueue) / partBytes)));
}
