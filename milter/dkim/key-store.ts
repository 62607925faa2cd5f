/**
 * Every signing key under keysDir, read once (and again on `reload()`, e.g. after a keygen or on
 * SIGHUP), so signing never touches the disk. Reading is synchronous: a handful of small files at
 * startup, and the service can build its checks without awaiting.
 *
 * A key file that group or others may read or write is refused with an error naming the file, as
 * OpenDKIM's RequireSafeKeys does ("key data is not secure"): a leaked signing key lets anyone
 * send mail that passes DKIM and DMARC for the domain. So are unreadable, mistyped and too short
 * keys. A failed reload keeps the keys loaded before.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { dkimAlgorithmOf, dnsSelector, RSA_MIN_BITS, type DkimAlgorithm } from './keys.ts';

export interface DkimKey {
  domain: string;
  /** The selector in the file name (SELECTOR.ALGORITHM.key), as configured. */
  selector: string;
  /** What the key signs as (s=) and is published under; see dnsSelector in keys.ts. */
  dnsSelector: string;
  algorithm: DkimAlgorithm;
  privateKey: KeyObject;
  path: string;
}

export interface KeyStoreOptions {
  keysDir: string;
  /** The selector signing uses (dkimSign.selector); keys of other selectors load but do not sign. */
  selector: string;
  /** Algorithms signing uses, in order (dkimSign.algorithms). */
  algorithms: readonly DkimAlgorithm[];
}

export class DkimKeyError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.length === 1 ? problems[0] : `${problems.length} DKIM key problems:\n  ${problems.join('\n  ')}`);
    this.name = 'DkimKeyError';
  }
}

const KEY_FILE = /^(.+)\.(rsa|ed25519)\.key$/;

export class KeyStore {
  private byDomain = new Map<string, DkimKey[]>();

  constructor(readonly opts: KeyStoreOptions) {}

  /** A store with the keys loaded; throws DkimKeyError when any key file is unsafe or unusable. */
  static load(opts: KeyStoreOptions): KeyStore {
    const store = new KeyStore(opts);
    store.reload();
    return store;
  }

  /** Read keysDir again. A missing keysDir is an empty store (nothing is signed), not an error. */
  reload(): { domains: number; keys: number } {
    const problems: string[] = [];
    const next = new Map<string, DkimKey[]>();
    for (const domain of listDir(this.opts.keysDir, problems)) {
      const dir = path.join(this.opts.keysDir, domain);
      if (domain.startsWith('.') || !isDirectory(dir)) continue;
      const keys: DkimKey[] = [];
      for (const file of listDir(dir, problems).sort()) {
        const m = KEY_FILE.exec(file);
        if (!m) continue;
        const key = readKey(path.join(dir, file), domain.toLowerCase(), m[1]!, m[2] as DkimAlgorithm, problems);
        if (key) keys.push(key);
      }
      if (keys.length > 0) next.set(domain.toLowerCase(), keys);
    }
    if (problems.length > 0) throw new DkimKeyError(problems);
    this.byDomain = next;
    return { domains: next.size, keys: [...next.values()].reduce((n, k) => n + k.length, 0) };
  }

  /** The keys that sign mail from `domain`: the configured selector, one per configured algorithm, in that order. */
  keysFor(domain: string): DkimKey[] {
    const keys = this.byDomain.get(domain.toLowerCase()) ?? [];
    return this.opts.algorithms.flatMap((a) => keys.filter((k) => k.selector === this.opts.selector && k.algorithm === a));
  }

  /** Every key loaded for `domain`, whatever its selector. */
  keysOf(domain: string): DkimKey[] {
    return [...(this.byDomain.get(domain.toLowerCase()) ?? [])];
  }

  get domains(): string[] {
    return [...this.byDomain.keys()].sort();
  }
}

function listDir(dir: string, problems: string[]): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') problems.push(`cannot read DKIM key directory ${dir}: ${(err as Error).message}`);
    return [];
  }
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function readKey(file: string, domain: string, selector: string, algorithm: DkimAlgorithm, problems: string[]): DkimKey | undefined {
  let mode: number;
  let pem: Buffer;
  try {
    mode = statSync(file).mode;
    pem = readFileSync(file);
  } catch (err) {
    problems.push(`cannot read DKIM key ${file}: ${(err as Error).message}`);
    return undefined;
  }
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    problems.push(
      `DKIM key ${file} is not secure: group or others may read or write it (mode ${octal}); refusing it. Run: chmod 600 ${file}`,
    );
    return undefined;
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    problems.push(`DKIM key ${file} is not a PEM private key: ${(err as Error).message}`);
    return undefined;
  }
  const actual = dkimAlgorithmOf(privateKey);
  if (actual !== algorithm) {
    problems.push(`DKIM key ${file} holds a ${privateKey.asymmetricKeyType} key, but its name says ${algorithm}`);
    return undefined;
  }
  const bits = privateKey.asymmetricKeyDetails?.modulusLength;
  if (algorithm === 'rsa' && bits !== undefined && bits < RSA_MIN_BITS) {
    problems.push(`DKIM key ${file} is a ${bits}-bit RSA key; verifiers reject keys under ${RSA_MIN_BITS} bits (RFC 8301)`);
    return undefined;
  }
  return { domain, selector, dnsSelector: dnsSelector(selector, algorithm), algorithm, privateKey, path: file };
}
