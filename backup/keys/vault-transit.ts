/**
 * HashiCorp Vault's transit secrets engine as the key provider, over plain HTTP(S) with fetch:
 *   POST /v1/{mount}/datakey/plaintext/{key}  {context, bits}       → {data:{plaintext, ciphertext}}
 *   POST /v1/{mount}/decrypt/{key}            {ciphertext, context} → {data:{plaintext}}
 *   POST /v1/{mount}/rewrap/{key}             {ciphertext, context} → {data:{ciphertext}}
 *   POST /v1/{mount}/encrypt/{key}            {plaintext, context}  → {data:{ciphertext}}
 *   GET  /v1/{mount}/keys/{key}                                     → {data:{derived, latest_version}}
 * with X-Vault-Token (config token, else VAULT_TOKEN) and X-Vault-Namespace when configured.
 * Errors come back as {errors:[…]} with a 4xx/5xx status; they are passed on verbatim.
 *
 * How a data key is bound to its backup (KeyContext): through key derivation. A transit key created
 * with `derived=true` derives a separate key from the request's `context` on every operation, so a
 * ciphertext only decrypts with the context it was made with. The alternatives do not work here:
 * - For a non-derived key Vault ignores `context` entirely (keysutil's GetKey returns the raw key),
 *   so sending it would look like a binding and be none.
 * - `associated_data` (AEAD AAD) is accepted by encrypt/decrypt only; datakey and rewrap have no
 *   such field, so rewrap would lose the binding.
 * So the provider requires a derived key before it makes a new wrap (generateDataKey, rewrap) and
 * says how to create one. unwrap does not check: it needs no read permission on the key, so a
 * restore works with a policy that only allows decrypt.
 *
 * The manifest's version is the N of `vault:vN:`; rewrap always asks Vault (which re-encrypts under
 * the latest version and, for derived keys, checks the context without the plaintext leaving Vault).
 * A manifest that names another transit key (the configured key was changed) is rewrapped by
 * decrypt under the old key and encrypt under the new one; the mount is always the configured one.
 */
import type { BackupConfig } from '../../core/config/backup.ts';
import { KeyError, type KeyContext, type KeyProvider, type WrappedKey } from '../contracts.ts';
import { canonicalContext, checkProvider, decodeBase64Strict, errorMessage, keyError, requireDataKey } from './common.ts';

export type VaultConfig = BackupConfig['keys']['vault'];

export interface VaultDeps {
  /** For VAULT_TOKEN; process.env when absent. */
  env?: NodeJS.ProcessEnv;
  fetch?: typeof fetch;
  /** Per request, including reading the body; 10 s unless a test wants less. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
/** Added when Vault's AEAD check fails (its words: "cipher: message authentication failed"). */
const CONTEXT_HINT = ' (the wrapped key belongs to another backup or object, or was altered)';
const CIPHERTEXT = /^vault:v([1-9][0-9]{0,8}):[A-Za-z0-9+/]+={0,2}$/;

interface KeyInfo {
  derived: boolean;
  latestVersion: number;
}

/** Checks address and token now, so a misconfigured command fails before it does any work. */
export function createVaultKeyProvider(config: VaultConfig, deps: VaultDeps = {}): KeyProvider {
  if (!config.address) throw new KeyError('backup.keys.vault.address is empty; set it to the Vault server, e.g. https://vault.example.net:8200');
  const token = config.token || (deps.env ?? process.env).VAULT_TOKEN || '';
  if (!token) throw new KeyError('no Vault token: set VAULT_TOKEN (or backup.keys.vault.token)');
  return new VaultTransitKeyProvider(
    { ...config, address: config.address.replace(/\/+$/, ''), token, keyName: checkKeyName(config.keyName) },
    deps.fetch ?? globalThis.fetch,
    deps.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  );
}

/** The config's pattern allows "." and ".."; in a URL path those would climb out of the mount. */
function checkKeyName(name: unknown): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(name) || /^\.+$/.test(name)) {
    throw new KeyError(`${JSON.stringify(name)} is not a Vault transit key name`);
  }
  return name;
}

class VaultTransitKeyProvider implements KeyProvider {
  readonly name = 'vault' as const;
  /** `derived` is fixed when a transit key is created, so one positive check per process is enough. */
  private derivedChecked = false;

  constructor(
    private readonly cfg: VaultConfig & { token: string },
    private readonly fetchFn: typeof fetch,
    private readonly timeoutMs: number,
  ) {}

  async generateDataKey(ctx: KeyContext): Promise<{ plaintext: Buffer; wrapped: WrappedKey }> {
    const context = contextParam(ctx);
    await this.requireDerived();
    const key = this.cfg.keyName;
    const data = await this.call('POST', `datakey/plaintext/${key}`, { context, bits: 256 });
    const wrapped = this.wrappedFrom(data.ciphertext, key, 'datakey');
    const plaintext = decodeBase64Strict(data.plaintext, `Vault datakey plaintext (key ${key})`);
    return { plaintext: requireDataKey(plaintext, `Vault transit key ${key}`), wrapped };
  }

  async unwrap(wrapped: WrappedKey, ctx: KeyContext): Promise<Buffer> {
    const key = this.checkWrapped(wrapped);
    const data = await this.call('POST', `decrypt/${key}`, { ciphertext: wrapped.wrapped, context: contextParam(ctx) }, CONTEXT_HINT);
    const plaintext = decodeBase64Strict(data.plaintext, `Vault decrypt plaintext (key ${key})`);
    return requireDataKey(plaintext, `Vault transit key ${key}`);
  }

  async rewrap(wrapped: WrappedKey, ctx: KeyContext): Promise<WrappedKey> {
    const from = this.checkWrapped(wrapped);
    const context = contextParam(ctx);
    await this.requireDerived();
    const to = this.cfg.keyName;
    if (from === to) {
      const data = await this.call('POST', `rewrap/${to}`, { ciphertext: wrapped.wrapped, context }, CONTEXT_HINT);
      return this.wrappedFrom(data.ciphertext, to, 'rewrap');
    }
    // Vault's rewrap stays within one key; moving to another key takes the plaintext through here.
    const plaintext = await this.unwrap(wrapped, ctx);
    try {
      const data = await this.call('POST', `encrypt/${to}`, { plaintext: plaintext.toString('base64'), context });
      return this.wrappedFrom(data.ciphertext, to, 'encrypt');
    } finally {
      plaintext.fill(0);
    }
  }

  async currentVersion(): Promise<string> {
    return String((await this.keyInfo()).latestVersion);
  }

  private async keyInfo(): Promise<KeyInfo> {
    const key = this.cfg.keyName;
    const data = await this.call('GET', `keys/${key}`);
    const latest = data.latest_version;
    if (typeof latest !== 'number' || !Number.isSafeInteger(latest) || latest < 1) {
      throw new KeyError(`Vault transit key ${this.cfg.mount}/${key} has no valid latest_version`);
    }
    return { derived: data.derived === true, latestVersion: latest };
  }

  private async requireDerived(): Promise<void> {
    if (this.derivedChecked) return;
    if (!(await this.keyInfo()).derived) {
      const { mount, keyName } = this.cfg;
      throw new KeyError(
        `Vault transit key ${mount}/${keyName} is not a derived key, so Vault would ignore the backup context and ` +
          `not bind data keys to their backup; create one with \`vault write -f ${mount}/keys/${keyName} derived=true\` ` +
          `(or set backup.keys.vault.keyName to a derived key)`,
      );
    }
    this.derivedChecked = true;
  }

  /** Provider, key name, and a `vault:vN:` ciphertext whose N matches the manifest's version. */
  private checkWrapped(wrapped: WrappedKey): string {
    checkProvider(wrapped, 'vault');
    const key = checkKeyName(wrapped.keyId);
    const m = typeof wrapped.wrapped === 'string' ? CIPHERTEXT.exec(wrapped.wrapped) : null;
    if (!m) throw new KeyError(`Vault-wrapped data key (key ${key}) is not a vault:vN: ciphertext`);
    if (m[1] !== wrapped.version) {
      throw new KeyError(`Vault-wrapped data key (key ${key}) says version ${JSON.stringify(wrapped.version)} but its ciphertext is vault:v${m[1]}`);
    }
    return key;
  }

  private wrappedFrom(ciphertext: unknown, key: string, op: string): WrappedKey {
    const m = typeof ciphertext === 'string' ? CIPHERTEXT.exec(ciphertext) : null;
    if (!m) throw new KeyError(`Vault ${op} with transit key ${key} returned no vault:vN: ciphertext`);
    return { provider: 'vault', keyId: key, version: m[1]!, wrapped: ciphertext as string };
  }

  /** One request with a deadline; any failure becomes a KeyError with the status and Vault's `errors`. */
  private async call(method: 'GET' | 'POST', route: string, body?: object, hint = ''): Promise<Record<string, unknown>> {
    const { address, mount, token, namespace } = this.cfg;
    const where = `${method} /v1/${mount}/${route}`;
    const headers: Record<string, string> = { 'X-Vault-Token': token, accept: 'application/json' };
    if (namespace) headers['X-Vault-Namespace'] = namespace;
    if (body) headers['content-type'] = 'application/json';
    let status: number;
    let location: string | null;
    let text: string;
    try {
      const res = await this.fetchFn(`${address}/v1/${mount}/${route}`, {
        method,
        headers,
        body: body ? JSON.stringify(body) : undefined,
        signal: AbortSignal.timeout(this.timeoutMs),
        // Not followed: fetch would resend X-Vault-Token to wherever the redirect points.
        redirect: 'manual',
      });
      status = res.status;
      location = res.headers.get('location');
      text = await res.text();
    } catch (err) {
      if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
        throw keyError(`Vault at ${address} did not answer ${where} within ${this.timeoutMs / 1000} s`, err);
      }
      const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
      throw keyError(`Vault at ${address} is unreachable (${where}): ${errorMessage(err)}${cause}`, err);
    }
    let json: unknown;
    try {
      json = text === '' ? {} : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (status >= 300 && status <= 399) {
      throw new KeyError(
        `Vault ${where} answered HTTP ${status} redirecting to ${location ?? '(no location)'}; redirects are not followed ` +
          `(the token would go along), so set backup.keys.vault.address to the server that answers`,
      );
    }
    if (status < 200 || status > 299) {
      const errors = (json as { errors?: unknown } | undefined)?.errors;
      const list = Array.isArray(errors) && errors.length > 0 ? `: ${errors.map(String).join('; ')}` : '';
      throw new KeyError(`Vault ${where} failed: HTTP ${status}${list}${/authentication failed/i.test(list) ? hint : ''}`);
    }
    const data = (json as { data?: unknown } | undefined)?.data;
    if (typeof data !== 'object' || data === null) throw new KeyError(`Vault ${where} answered HTTP ${status} without a data object`);
    return data as Record<string, unknown>;
  }
}

/** Vault's `context` is base64 of the canonical KeyContext bytes (the same bytes the keyring uses as AAD). */
function contextParam(ctx: KeyContext): string {
  return canonicalContext(ctx).toString('base64');
}
