/**
 * Streaming authenticated encryption for backup objects: AES-256-GCM in the STREAM construction
 * with a per-object HKDF key. Format and reasons: stream-format.ts.
 */
export { createEncryptStream, type EncryptOptions } from './encrypt-stream.ts';
export { createDecryptStream, type DecryptOptions } from './decrypt-stream.ts';
export {
  DEFAULT_CHUNK_BYTES,
  MAX_CHUNK_BYTES,
  MAX_HEADER_BYTES,
  MIN_CHUNK_BYTES,
  encodeHeader,
  objectLabel,
  readHeader,
  type StreamHeader,
} from './stream-format.ts';
