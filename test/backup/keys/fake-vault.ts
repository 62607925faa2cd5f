/**
 * A PROTOCOL FAKE of HashiCorp Vault's transit engine for tests: an in-process HTTP server with the
 * JSON endpoints the backup uses, under /v1/<mount>/:
 *   GET  keys/:name            POST keys/:name (create)      POST keys/:name/rotate
 *   POST datakey/plaintext|wrapped/:name   POST encrypt/:name   POST decrypt/:name   POST rewrap/:name
 * Answers are Vault-shaped ({data:{…}} or {errors:[…]} with 4xx), and it records every request.
 *
 * What it does for real: aes256-gcm96 keys with versions (rotate adds one; old versions decrypt),
 * ciphertexts `vault:vN:base64(nonce ‖ ct ‖ tag)`, derived keys that derive the per-request key from
 * `context` with HKDF-SHA256 (Vault's default KDF) and refuse requests without one, non-derived keys
 * that IGNORE `context` (as Vault does), X-Vault-Token checks (403 "permission denied"), an optional
 * required X-Vault-Namespace, and knobs for delays, injected failures and short data keys.
 *
 * What it does NOT cover: ACL policies and token lifetimes, other key types (chacha20, rsa, managed
 * keys), convergent encryption, min_decryption_version / min_encryption_version / archiving,
 * batch_input, key_version on requests, associated_data, HTTP redirects to the active node, TLS, and
 * Vault's exact error strings beyond the few copied here.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeVaultRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown> | undefined;
}

interface TransitKey {
  derived: boolean;
  versions: Buffer[]; // index 0 = version 1
  created: number[];
}

class VaultFault extends Error {
  constructor(
    readonly status: number,
    readonly errors: string[],
  ) {
    super(errors.join('; '));
  }
}

export class FakeVault {
  readonly token = 'fake-root-token';
  readonly mount = 'transit';
  readonly requests: FakeVaultRequest[] = [];
  /** When set, requests without this X-Vault-Namespace are refused. */
  namespace: string | undefined;
  /** Milliseconds to wait before answering (timeout tests). */
  delayMs = 0;
  /** The next request answers with this status and errors instead. */
  failNext: { status: number; errors: string[] } | undefined;
  /** datakey hands out a plaintext of this many bytes whatever `bits` says (a broken server). */
  plaintextBytes: number | undefined;
  address = '';
  private readonly keys = new Map<string, TransitKey>();
  private server!: Server;

  static async start(): Promise<FakeVault> {
    const v = new FakeVault();
    v.server = createServer((req, res) => void v.handle(req, res));
    v.server.listen(0, '127.0.0.1');
    await once(v.server, 'listening');
    v.address = `http://127.0.0.1:${(v.server.address() as AddressInfo).port}`;
    return v;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  createKey(name: string, opts: { derived?: boolean } = {}): void {
    this.keys.set(name, { derived: opts.derived ?? true, versions: [randomBytes(32)], created: [Date.now()] });
  }

  private key(name: string): TransitKey {
    const k = this.keys.get(name);
    if (!k) throw new VaultFault(400, ['encryption key not found']);
    return k;
  }

  /** Vault's GetKey: the raw version key unless derived, then HKDF(key, no salt, info = context). */
  private encKey(k: TransitKey, version: number, contextB64: unknown): Buffer {
    const raw = k.versions[version - 1]!;
    if (!k.derived) return raw; // context, if sent, is ignored: exactly what makes non-derived keys unsafe here
    const context = typeof contextB64 === 'string' ? Buffer.from(contextB64, 'base64') : Buffer.alloc(0);
    if (context.length === 0) {
      throw new VaultFault(400, [
        "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key",
      ]);
    }
    return Buffer.from(hkdfSync('sha256', raw, Buffer.alloc(0), context, 32));
  }

  private encrypt(k: TransitKey, plaintext: Buffer, context: unknown): string {
    const version = k.versions.length;
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.encKey(k, version, context), nonce);
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return `vault:v${version}:${Buffer.concat([nonce, ct, cipher.getAuthTag()]).toString('base64')}`;
  }

  private decrypt(k: TransitKey, ciphertext: unknown, context: unknown): Buffer {
    if (typeof ciphertext !== 'string' || ciphertext === '') throw new VaultFault(400, ['missing ciphertext to decrypt']);
    const m = /^vault:v(\d+):(.*)$/.exec(ciphertext);
    if (!m) throw new VaultFault(400, ['invalid ciphertext: no prefix']);
    const version = Number(m[1]) || 1;
    if (version > k.versions.length) throw new VaultFault(400, ['invalid ciphertext: version is too new']);
    const blob = Buffer.from(m[2]!, 'base64');
    if (blob.length < 28) throw new VaultFault(400, ['invalid ciphertext: could not decode base64']);
    const decipher = createDecipheriv('aes-256-gcm', this.encKey(k, version, context), blob.subarray(0, 12));
    decipher.setAuthTag(blob.subarray(blob.length - 16));
    try {
      return Buffer.concat([decipher.update(blob.subarray(12, blob.length - 16)), decipher.final()]);
    } catch {
      throw new VaultFault(400, ['cipher: message authentication failed']);
    }
  }

  private keyData(name: string, k: TransitKey): Record<string, unknown> {
    return {
      name,
      type: 'aes256-gcm96',
      derived: k.derived,
      kdf: k.derived ? 'hkdf_sha256' : undefined,
      latest_version: k.versions.length,
      min_decryption_version: 1,
      min_encryption_version: 0,
      supports_encryption: true,
      supports_decryption: true,
      supports_derivation: true,
      keys: Object.fromEntries(k.created.map((t, i) => [String(i + 1), Math.floor(t / 1000)])),
    };
  }

  /** Route one request; returns the `data` object, or null for 204. */
  private route(method: string, parts: string[], body: Record<string, unknown>): Record<string, unknown> | null {
    const [op, a, b] = parts;
    if (op === 'keys' && a && b === undefined && method === 'GET') {
      const k = this.keys.get(a);
      if (!k) throw new VaultFault(404, []);
      return this.keyData(a, k);
    }
    if (op === 'keys' && a && b === undefined && method === 'POST') {
      if (!this.keys.has(a)) this.createKey(a, { derived: body.derived === true });
      return null;
    }
    if (op === 'keys' && a && b === 'rotate' && method === 'POST') {
      const k = this.key(a);
      k.versions.push(randomBytes(32));
      k.created.push(Date.now());
      return this.keyData(a, k);
    }
    if (method !== 'POST' || !a) throw new VaultFault(405, ['unsupported operation']);
    if (op === 'datakey' && b && (a === 'plaintext' || a === 'wrapped')) {
      const k = this.key(b);
      const bits = body.bits ?? 256;
      if (bits !== 128 && bits !== 256 && bits !== 512) throw new VaultFault(400, ['invalid bit length']);
      const plaintext = randomBytes(this.plaintextBytes ?? (bits as number) / 8);
      const ciphertext = this.encrypt(k, plaintext, body.context);
      return { ciphertext, key_version: k.versions.length, ...(a === 'plaintext' ? { plaintext: plaintext.toString('base64') } : {}) };
    }
    if (op === 'encrypt' && b === undefined) {
      const k = this.key(a);
      if (typeof body.plaintext !== 'string') throw new VaultFault(400, ['missing plaintext to encrypt']);
      return { ciphertext: this.encrypt(k, Buffer.from(body.plaintext, 'base64'), body.context), key_version: k.versions.length };
    }
    if (op === 'decrypt' && b === undefined) {
      return { plaintext: this.decrypt(this.key(a), body.ciphertext, body.context).toString('base64') };
    }
    if (op === 'rewrap' && b === undefined) {
      const k = this.key(a);
      const plaintext = this.decrypt(k, body.ciphertext, body.context);
      return { ciphertext: this.encrypt(k, plaintext, body.context), key_version: k.versions.length };
    }
    throw new VaultFault(404, [`no handler for route "${this.mount}/${parts.join('/')}"`]);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = new URL(req.url ?? '/', 'http://fake');
    const text = Buffer.concat(chunks).toString();
    const body = text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
    this.requests.push({ method: req.method ?? '', path: url.pathname, headers: req.headers, body });
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    const reply = (status: number, payload?: unknown) => {
      if (res.destroyed) return;
      res.writeHead(status, payload === undefined ? {} : { 'content-type': 'application/json' });
      res.end(payload === undefined ? undefined : JSON.stringify(payload));
    };
    try {
      if (this.failNext) {
        const f = this.failNext;
        this.failNext = undefined;
        throw new VaultFault(f.status, f.errors);
      }
      if (req.headers['x-vault-token'] !== this.token) throw new VaultFault(403, ['permission denied']);
      if (this.namespace !== undefined && req.headers['x-vault-namespace'] !== this.namespace) {
        throw new VaultFault(403, ['permission denied']);
      }
      const prefix = `/v1/${this.mount}/`;
      if (!url.pathname.startsWith(prefix)) throw new VaultFault(404, [`no handler for route "${url.pathname}"`]);
      const data = this.route(req.method ?? '', url.pathname.slice(prefix.length).split('/').map(decodeURIComponent), body ?? {});
      if (data === null) reply(204);
      else reply(200, { request_id: randomUUID(), lease_id: '', renewable: false, lease_duration: 0, data, wrap_info: null, warnings: null, auth: null });
    } catch (err) {
      if (err instanceof VaultFault) reply(err.status, { errors: err.errors });
      else reply(500, { errors: [String(err)] });
    }
  }
}
