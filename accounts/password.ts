/**
 * Password hashes Dovecot 2.3 verifies itself, made in pure JS/WASM (hash-wasm): the CLI may run
 * on a host without Dovecot, so no doveadm and no native addon.
 *
 * - `{ARGON2ID}` (default): PHC form `$argon2id$v=19$m=65536,t=2,p=1$<salt>$<hash>`. Dovecot checks
 *   it with libsodium's crypto_pwhash_str_verify, which reads the costs from the string and
 *   accepts only one lane (p=1). The costs are libsodium's "interactive" ones (t=2, 64 MiB).
 * - `{BLF-CRYPT}`: bcrypt, cost 12, written `$2y$` as `doveadm pw -s BLF-CRYPT` writes it. hash-wasm
 *   labels it `$2a$`; both mean the corrected algorithm to Dovecot's crypt_blowfish, and they can
 *   differ only for passwords with 0xFF bytes, which UTF-8 never has. bcrypt reads only the first
 *   72 bytes, so longer passwords are refused for it rather than silently cut.
 *
 * Passwords are hashed as their UTF-8 bytes, unnormalised: Dovecot compares the bytes the client
 * sends. Measured on the development machine (Node 20, one core): ARGON2ID ~330 ms, BLF-CRYPT
 * cost 12 ~270 ms per hash.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { argon2id, bcrypt } from 'hash-wasm';

export const PASSWORD_SCHEMES = ['ARGON2ID', 'BLF-CRYPT'] as const;
export type PasswordScheme = (typeof PASSWORD_SCHEMES)[number];
export const DEFAULT_SCHEME: PasswordScheme = 'ARGON2ID';

/** libsodium's crypto_pwhash_OPSLIMIT_INTERACTIVE / MEMLIMIT_INTERACTIVE; one lane, as it requires. */
export const ARGON2ID_COST = { iterations: 2, memoryKiB: 64 * 1024, parallelism: 1, saltBytes: 16, hashBytes: 32 } as const;
/** 2^12 rounds; Dovecot's own default is 5, OWASP's floor is 10. */
export const BCRYPT_COST = 12;
/** bcrypt ignores every byte after the 72nd. */
export const BCRYPT_MAX_BYTES = 72;
/**
 * Far beyond any passphrase, far below what IMAP LOGIN and SASL lines carry: a longer "password"
 * is a pasted file, not a secret someone will type again.
 */
export const MAX_PASSWORD_BYTES = 1024;

export class PasswordPolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PasswordPolicyError';
  }
}

// C0, DEL and C1 controls: they cannot be typed into a login form and break line-based protocols.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
// An unpaired UTF-16 surrogate has no UTF-8 form: it would be hashed as U+FFFD and never match.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Throws PasswordPolicyError when `password` cannot be (or should not be) stored in `scheme`. */
export function checkPassword(password: string, scheme: PasswordScheme = DEFAULT_SCHEME): void {
  if (password.length === 0) throw new PasswordPolicyError('the password is empty');
  if (CONTROL.test(password)) throw new PasswordPolicyError('the password contains a control character (a newline, tab or similar)');
  if (LONE_SURROGATE.test(password)) throw new PasswordPolicyError('the password is not valid Unicode (an unpaired surrogate)');
  const bytes = Buffer.byteLength(password, 'utf8');
  if (bytes > MAX_PASSWORD_BYTES) throw new PasswordPolicyError(`the password is ${bytes} bytes long; at most ${MAX_PASSWORD_BYTES} are accepted`);
  if (scheme === 'BLF-CRYPT' && bytes > BCRYPT_MAX_BYTES) {
    throw new PasswordPolicyError(`BLF-CRYPT (bcrypt) uses only the first ${BCRYPT_MAX_BYTES} bytes and this password has ${bytes}: use ARGON2ID or a shorter password`);
  }
}

export function parseScheme(text: string): PasswordScheme {
  const upper = text.trim().toUpperCase();
  const scheme = PASSWORD_SCHEMES.find((s) => s === upper);
  if (!scheme) throw new PasswordPolicyError(`unknown password scheme ${JSON.stringify(text)}: use ${PASSWORD_SCHEMES.join(' or ')}`);
  return scheme;
}

/** `{SCHEME}hash`, ready for the accounts table. Checks the password first. */
export async function hashPassword(password: string, scheme: PasswordScheme = DEFAULT_SCHEME): Promise<string> {
  checkPassword(password, scheme);
  const bytes = Buffer.from(password, 'utf8');
  if (scheme === 'ARGON2ID') {
    const encoded = await argon2id({
      password: bytes,
      salt: randomBytes(ARGON2ID_COST.saltBytes),
      iterations: ARGON2ID_COST.iterations,
      memorySize: ARGON2ID_COST.memoryKiB,
      parallelism: ARGON2ID_COST.parallelism,
      hashLength: ARGON2ID_COST.hashBytes,
      outputType: 'encoded',
    });
    return `{ARGON2ID}${encoded}`;
  }
  const encoded = await bcrypt({ password: bytes, salt: randomBytes(16), costFactor: BCRYPT_COST, outputType: 'encoded' });
  return `{BLF-CRYPT}${encoded.replace(/^\$2[abxy]\$/, '$2y$')}`;
}

// No 0/O, 1/l/I: a generated password is read off a screen and typed on a phone.
const ALPHABET = 'abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
export const GENERATED_LENGTH = 20;

/** A random password of GENERATED_LENGTH characters from a 57-letter alphabet (~116 bits). */
export function generatePassword(): string {
  let out = '';
  for (let i = 0; i < GENERATED_LENGTH; i++) out += ALPHABET[randomInt(ALPHABET.length)];
  return out;
}
