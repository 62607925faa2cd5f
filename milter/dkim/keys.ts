/**
 * DKIM signing keys on disk and their DNS records.
 *
 * Layout (what `ceerion dkim keygen` writes and the key store reads):
 *   KEYS_DIR/DOMAIN/SELECTOR.rsa.key      RSA 2048, PKCS#8 PEM (PKCS#1 from opendkim-genkey loads too)
 *   KEYS_DIR/DOMAIN/SELECTOR.ed25519.key  Ed25519, PKCS#8 PEM
 * Key files are 0600 and their directories 0700: like OpenDKIM (RequireSafeKeys), the store refuses
 * a key that group or others may read or write.
 *
 * The public half goes into DNS at SELECTOR._domainkey.DOMAIN (RFC 6376 3.6.1):
 *   rsa:     v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>
 *   ed25519: v=DKIM1; k=ed25519; p=<base64 of the raw 32-byte public key> (RFC 8463 4.2, not SPKI)
 * A TXT string holds at most 255 bytes, so the value is published as several strings, which
 * resolvers hand back as chunks and verifiers concatenate.
 *
 * One selector, two DNS names: the RSA key of selector S is published (and signs, s=) as S, the
 * Ed25519 key as S-ed25519. Both at one name would be two TXT records where verifiers expect one
 * (RFC 6376 3.6.2.2 leaves the choice to them; mailauth and others take the first), so one of
 * the two signatures would always fail. RSA keeps the plain name, so a key moved over from
 * OpenDKIM (S.private → S.rsa.key) keeps its published record.
 */
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmodSync, mkdirSync, openSync, closeSync, writeSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';

export type DkimAlgorithm = 'rsa' | 'ed25519';
export const DKIM_ALGORITHMS: readonly DkimAlgorithm[] = ['rsa', 'ed25519'];

/** The `a=` tag each key type signs with. */
export const SIGNING_ALGORITHM: Record<DkimAlgorithm, string> = { rsa: 'rsa-sha256', ed25519: 'ed25519-sha256' };

export const RSA_BITS = 2048;
/** RFC 8301 3.2: verifiers must not accept RSA keys under 1024 bits, so we do not sign with one. */
export const RSA_MIN_BITS = 1024;

/** A fresh private key as PKCS#8 PEM. */
export function generatePrivateKey(algorithm: DkimAlgorithm): string {
  const pair = algorithm === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: RSA_BITS }) : generateKeyPairSync('ed25519');
  return pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** The selector a key signs with (s=) and is published under: S for RSA, S-ed25519 for Ed25519. */
export function dnsSelector(selector: string, algorithm: DkimAlgorithm): string {
  return algorithm === 'rsa' ? selector : `${selector}-ed25519`;
}

export function keyFileName(selector: string, algorithm: DkimAlgorithm): string {
  return `${selector}.${algorithm}.key`;
}

export function keyPath(keysDir: string, domain: string, selector: string, algorithm: DkimAlgorithm): string {
  return path.join(keysDir, domain.toLowerCase(), keyFileName(selector, algorithm));
}

export class KeyExistsError extends Error {
  constructor(readonly path: string) {
    super(`${path} already exists; use --force to replace it (the old key's DNS record stops verifying)`);
    this.name = 'KeyExistsError';
  }
}

export interface WrittenKey {
  path: string;
  privateKeyPem: string;
}

/**
 * Generate a key and write it 0600 (its directories 0700). An existing key is kept unless `force`;
 * a forced replacement is written beside it and renamed over it, so a reader never sees half a key.
 */
export function writeNewKey(
  keysDir: string,
  domain: string,
  selector: string,
  algorithm: DkimAlgorithm,
  opts: { force?: boolean } = {},
): WrittenKey {
  const file = keyPath(keysDir, domain, selector, algorithm);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const pem = generatePrivateKey(algorithm);
  const target = opts.force ? `${file}.${process.pid}.tmp` : file;
  if (opts.force) rmSync(target, { force: true }); // left over from a crashed run
  let fd: number;
  try {
    // O_EXCL: never overwrite, even when two keygens race.
    fd = openSync(target, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST' && !opts.force) throw new KeyExistsError(file);
    throw err;
  }
  try {
    writeSync(fd, pem);
  } finally {
    closeSync(fd);
  }
  try {
    chmodSync(target, 0o600); // the umask can only have narrowed it; make it exact
    if (opts.force) renameSync(target, file);
  } catch (err) {
    rmSync(target, { force: true });
    throw err;
  }
  return { path: file, privateKeyPem: pem };
}

/** The key type as DKIM names it, or undefined for a key DKIM cannot use. */
export function dkimAlgorithmOf(key: KeyObject): DkimAlgorithm | undefined {
  const type = key.asymmetricKeyType;
  return type === 'rsa' || type === 'ed25519' ? type : undefined;
}

/** The TXT record's value for a key (private or public): `v=DKIM1; k=…; p=…`. */
export function dnsRecordValue(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const algorithm = dkimAlgorithmOf(pub);
  if (!algorithm) throw new Error(`not a DKIM key type: ${pub.asymmetricKeyType}`);
  const spki = pub.export({ type: 'spki', format: 'der' });
  // An Ed25519 SPKI is a fixed 12-byte prefix and the 32-byte key; RFC 8463 publishes the key alone.
  const p = algorithm === 'rsa' ? spki : spki.subarray(spki.length - 32);
  return `v=DKIM1; k=${algorithm}; p=${p.toString('base64')}`;
}

/**
 * The value as TXT character-strings of at most 255 bytes: the tags first, then `p=` split at
 * 255. This is the shape a resolver returns ([[chunk, chunk]]) and a zone file lists.
 */
export function txtChunks(value: string): string[] {
  const at = value.indexOf('p=');
  const head = at > 0 ? [value.slice(0, at)] : [];
  const rest = at > 0 ? value.slice(at) : value;
  return [...head, ...(rest.match(/.{1,255}/gs) ?? [''])];
}

export function recordName(domain: string, selector: string): string {
  return `${selector}._domainkey.${domain.toLowerCase()}`;
}

/**
 * The record in zone-file form, ready for BIND or a DNS provider's "TXT" box:
 *   ceerion._domainkey.example.com.	IN	TXT	( "v=DKIM1; k=rsa; "
 *   	"p=MIIBIjANBg…" "…IDAQAB" )
 */
export function zoneFileRecord(domain: string, selector: string, value: string): string {
  const strings = txtChunks(value).map((c) => `"${c.replace(/(["\\])/g, '\\$1')}"`);
  return `${recordName(domain, selector)}.\tIN\tTXT\t( ${strings.join('\n\t')} )\n`;
}

/** The character-strings of a zone-file TXT record (the inverse of zoneFileRecord; tests use it). */
export function parseZoneFileTxt(text: string): string[] {
  return [...text.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => (m[1] ?? '').replace(/\\(.)/g, '$1'));
}
