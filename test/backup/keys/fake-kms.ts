/**
 * A PROTOCOL FAKE of AWS KMS for tests: an in-process HTTP server that speaks KMS's JSON 1.1 wire
 * protocol (POST /, `X-Amz-Target: TrentService.<Op>`, `application/x-amz-json-1.1`, blobs as
 * base64, errors as HTTP 400 + {"__type", "message"}) for the three operations the backup uses:
 * GenerateDataKey, Decrypt and ReEncrypt. The real KMSClient is pointed at it (endpoint option,
 * static fake credentials).
 *
 * What it does for real: AES-256-GCM under per-key "backing material" (rotate() adds one, like KMS
 * automatic rotation; old material keeps decrypting), the EncryptionContext as AAD (order of the map
 * does not matter, a different map fails with InvalidCiphertextException), key ids by ARN, bare id,
 * alias name or alias ARN, IncorrectKeyException when Decrypt names another key than the blob's,
 * NotFoundException for unknown keys, and it records every call (target, body, headers).
 *
 * What it does NOT cover: SigV4 signature verification (it only checks that an AWS4-HMAC-SHA256
 * Authorization header is present), IAM/key policies and grants, key states (disabled, pending
 * deletion), throttling and retries, multi-region keys, asymmetric keys, every other operation, and
 * the real CiphertextBlob format (this one is its own: magic, ARN, material index, nonce, ct, tag).
 */
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeKmsCall {
  target: string;
  body: Record<string, unknown>;
  headers: IncomingMessage['headers'];
}

class KmsFault extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

const MAGIC = Buffer.from('FKM1');

export class FakeKms {
  readonly region = 'eu-west-1';
  readonly account = '111122223333';
  readonly calls: FakeKmsCall[] = [];
  /** Set to make GenerateDataKey/Decrypt hand back a plaintext of this many bytes (a broken endpoint). */
  plaintextBytes: number | undefined;
  private readonly keys = new Map<string, Buffer[]>();
  private readonly aliases = new Map<string, string>();
  private server!: Server;
  endpoint = '';

  static async start(): Promise<FakeKms> {
    const kms = new FakeKms();
    kms.server = createServer((req, res) => void kms.handle(req, res));
    kms.server.listen(0, '127.0.0.1');
    await once(kms.server, 'listening');
    kms.endpoint = `http://127.0.0.1:${(kms.server.address() as AddressInfo).port}`;
    return kms;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** A symmetric key (with one backing material); returns its ARN. */
  createKey(alias?: string): string {
    const arn = `arn:aws:kms:${this.region}:${this.account}:key/${randomUUID()}`;
    this.keys.set(arn, [randomBytes(32)]);
    if (alias) this.aliases.set(`alias/${alias}`, arn);
    return arn;
  }

  /** Like KMS key rotation: new material for new encryptions, old material still decrypts. */
  rotate(keyId: string): void {
    this.keys.get(this.resolve(keyId))!.push(randomBytes(32));
  }

  /** Which key and material index a blob was made under (for asserting ReEncrypt). */
  inspect(blobBase64: string): { arn: string; material: number } {
    const { arn, material } = this.parseBlob(Buffer.from(blobBase64, 'base64'));
    return { arn, material };
  }

  private resolve(keyId: unknown): string {
    if (typeof keyId !== 'string' || keyId === '') throw new KmsFault('ValidationException', 'KeyId is required');
    const aliasArn = /^arn:aws:kms:[^:]+:\d+:(alias\/.+)$/.exec(keyId);
    const alias = aliasArn ? aliasArn[1]! : keyId.startsWith('alias/') ? keyId : undefined;
    if (alias) {
      const arn = this.aliases.get(alias);
      if (!arn) throw new KmsFault('NotFoundException', `Alias arn:aws:kms:${this.region}:${this.account}:${alias} is not found.`);
      return arn;
    }
    const arn = keyId.startsWith('arn:') ? keyId : `arn:aws:kms:${this.region}:${this.account}:key/${keyId}`;
    if (!this.keys.has(arn)) throw new KmsFault('NotFoundException', `Key '${arn}' does not exist`);
    return arn;
  }

  private encrypt(arn: string, plaintext: Buffer, context: unknown): Buffer {
    const materials = this.keys.get(arn)!;
    const material = materials.length - 1;
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', materials[material]!, nonce);
    cipher.setAAD(aad(context));
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const arnBytes = Buffer.from(arn);
    const head = Buffer.alloc(6);
    head.writeUInt16BE(arnBytes.length, 0);
    head.writeUInt32BE(material, 2);
    return Buffer.concat([MAGIC, head.subarray(0, 2), arnBytes, head.subarray(2), nonce, ct, cipher.getAuthTag()]);
  }

  private parseBlob(blob: Buffer): { arn: string; material: number; nonce: Buffer; ct: Buffer; tag: Buffer } {
    const invalid = () => new KmsFault('InvalidCiphertextException', '');
    if (blob.length < 4 + 2 + 4 + 12 + 16 || !blob.subarray(0, 4).equals(MAGIC)) throw invalid();
    const arnLen = blob.readUInt16BE(4);
    if (blob.length < 6 + arnLen + 4 + 12 + 16) throw invalid();
    const arn = blob.subarray(6, 6 + arnLen).toString();
    const material = blob.readUInt32BE(6 + arnLen);
    const rest = blob.subarray(6 + arnLen + 4);
    return { arn, material, nonce: rest.subarray(0, 12), ct: rest.subarray(12, rest.length - 16), tag: rest.subarray(rest.length - 16) };
  }

  private decrypt(blobBase64: unknown, keyId: unknown, context: unknown): { arn: string; plaintext: Buffer } {
    if (typeof blobBase64 !== 'string') throw new KmsFault('ValidationException', 'CiphertextBlob is required');
    const { arn, material, nonce, ct, tag } = this.parseBlob(Buffer.from(blobBase64, 'base64'));
    if (keyId !== undefined && this.resolve(keyId) !== arn) {
      throw new KmsFault('IncorrectKeyException', 'The key ID in the request does not identify a CMK that can perform this operation.');
    }
    const key = this.keys.get(arn)?.[material];
    if (!key) throw new KmsFault('InvalidCiphertextException', '');
    const decipher = createDecipheriv('aes-256-gcm', key, nonce);
    decipher.setAAD(aad(context));
    decipher.setAuthTag(tag);
    try {
      return { arn, plaintext: Buffer.concat([decipher.update(ct), decipher.final()]) };
    } catch {
      throw new KmsFault('InvalidCiphertextException', '');
    }
  }

  private plaintextOf(n: number): Buffer {
    return randomBytes(this.plaintextBytes ?? n);
  }

  private operations: Record<string, (b: Record<string, unknown>) => Record<string, unknown>> = {
    GenerateDataKey: (b) => {
      const arn = this.resolve(b.KeyId);
      const bytes = b.KeySpec === 'AES_256' ? 32 : b.KeySpec === 'AES_128' ? 16 : typeof b.NumberOfBytes === 'number' ? b.NumberOfBytes : 0;
      if (bytes === 0 || (b.KeySpec !== undefined && b.NumberOfBytes !== undefined)) {
        throw new KmsFault('ValidationException', 'Please specify either number of bytes or key spec.');
      }
      const plaintext = this.plaintextOf(bytes);
      return {
        CiphertextBlob: this.encrypt(arn, plaintext, b.EncryptionContext).toString('base64'),
        Plaintext: plaintext.toString('base64'),
        KeyId: arn,
      };
    },
    Decrypt: (b) => {
      const { arn, plaintext } = this.decrypt(b.CiphertextBlob, b.KeyId, b.EncryptionContext);
      const out = this.plaintextBytes === undefined ? plaintext : this.plaintextOf(0);
      return { KeyId: arn, Plaintext: out.toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
    },
    ReEncrypt: (b) => {
      const { arn: source, plaintext } = this.decrypt(b.CiphertextBlob, b.SourceKeyId, b.SourceEncryptionContext);
      const dest = this.resolve(b.DestinationKeyId);
      return {
        CiphertextBlob: this.encrypt(dest, plaintext, b.DestinationEncryptionContext).toString('base64'),
        SourceKeyId: source,
        KeyId: dest,
        SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      };
    },
  };

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID() });
      res.end(JSON.stringify(body));
    };
    try {
      const target = String(req.headers['x-amz-target'] ?? '');
      if (req.method !== 'POST' || !target.startsWith('TrentService.')) throw new KmsFault('UnknownOperationException', `no target ${target}`);
      if (!String(req.headers['content-type'] ?? '').startsWith('application/x-amz-json-1.1')) {
        throw new KmsFault('ValidationException', 'expected application/x-amz-json-1.1');
      }
      if (!String(req.headers.authorization ?? '').startsWith('AWS4-HMAC-SHA256 Credential=')) {
        reply(403, { __type: 'MissingAuthenticationTokenException', message: 'Missing Authentication Token' });
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, unknown>;
      const op = target.slice('TrentService.'.length);
      this.calls.push({ target: op, body, headers: req.headers });
      const fn = this.operations[op];
      if (!fn) throw new KmsFault('UnknownOperationException', `${op} is not implemented by the fake`);
      reply(200, fn(body));
    } catch (err) {
      if (err instanceof KmsFault) reply(400, { __type: err.type, message: err.message });
      else reply(500, { __type: 'KMSInternalException', message: String(err) });
    }
  }
}

/** KMS treats the context as a set of pairs: canonicalize by sorting, so map order does not matter. */
function aad(context: unknown): Buffer {
  const entries = Object.entries((context ?? {}) as Record<string, string>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Buffer.from(JSON.stringify(entries));
}
