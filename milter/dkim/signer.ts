/**
 * mailauth's DKIM signer with oversigning. mailauth's DkimSigner (lib/dkim/dkim-signer.js) streams:
 * it is a Writable that splits header from body, canonicalizes and hashes the body as chunks
 * arrive (one hasher per canonicalization/hash, shared by all signatures), and signs every entry
 * of `signatureData` at the end, so one pass gives an RSA and an Ed25519 signature.
 *
 * What it lacks is oversigning: its h= lists only the fields present. We replace its `finalize`
 * (the last step, after the body hash) with the same steps built from its own parts, plus the
 * oversigned names added to h= once more. RFC 6376 5.4.2: a name listed more often than the field
 * occurs stands for a null field, so a verifier fails the signature if such a field is added later.
 *
 * We also pin t= once per message: mailauth otherwise reads the clock twice (once for the signed
 * copy of the header, once for the header it returns), and a second boundary between the two
 * would produce a signature that never verifies.
 */
import { createHash, sign, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Writable } from 'node:stream';
import type { DkimKey } from './key-store.ts';
import { SIGNING_ALGORITHM, type DkimAlgorithm } from './keys.ts';

interface ParsedHeader {
  key: string;
  casedKey: string;
  line: Buffer;
}
interface SignatureData {
  signingDomain: string;
  selector: string;
  privateKey: KeyObject;
  algorithm: string;
  canonicalization: string;
  maxBodyLength?: number | '';
}
interface MailauthSigner extends Writable {
  headers: { parsed: ParsedHeader[] } | false;
  signatureData: SignatureData[];
  bodyHashes: Map<string, { hash: string | null }>;
  getCanonicalization(sd: SignatureData): { canonicalization: string; bodyCanon: string };
  getAlgorithm(sd: SignatureData): { hashAlgo: string };
  finalize(): Promise<void>;
}

const require = createRequire(import.meta.url);
const { DkimSigner } = require('mailauth/lib/dkim/dkim-signer.js') as {
  DkimSigner: new (options: { canonicalization: string; signatureData: SignatureData[] }) => MailauthSigner;
};
const { getSigningHeaderLines, formatSignatureHeaderLine } = require('mailauth/lib/tools.js') as {
  getSigningHeaderLines(parsed: ParsedHeader[], fieldNames: string): { keys: string; headers: ParsedHeader[] };
  formatSignatureHeaderLine(type: 'DKIM', values: Record<string, unknown>, folded: boolean): string;
};
const { generateCanonicalizedHeader } = require('mailauth/lib/dkim/header/index.js') as {
  generateCanonicalizedHeader(
    type: 'DKIM',
    lines: { keys: string; headers: ParsedHeader[] },
    opts: Record<string, unknown>,
  ): { canonicalizedHeader: Buffer; dkimHeaderOpts: Record<string, unknown> };
};

export const CANONICALIZATION = 'relaxed/relaxed';

export interface SignerOptions {
  /** One signature per key, with d= the key's domain and s= its DNS selector. */
  keys: readonly DkimKey[];
  /** Field names to sign, where present. */
  headers: readonly string[];
  /** Field names signed once more than they occur. */
  oversign: readonly string[];
}

export interface Signature {
  algorithm: DkimAlgorithm;
  /** The DKIM-Signature value, folded with "\n\t" as milters hand headers to Postfix. */
  value: string;
}

export interface SignOutcome {
  signatures: Signature[];
  errors: Array<{ algorithm: DkimAlgorithm; message: string }>;
}

/** mailauth's streaming signer with our last step: oversigned h=, one pinned t=, milter folding. */
class OversigningSigner extends DkimSigner {
  readonly outcome: SignOutcome = { signatures: [], errors: [] };
  private readonly fieldNames: string;
  private readonly oversign: string[];

  constructor(opts: SignerOptions) {
    super({
      canonicalization: CANONICALIZATION,
      signatureData: opts.keys.map((k) => ({
        signingDomain: k.domain,
        selector: k.dnsSelector,
        privateKey: k.privateKey,
        algorithm: SIGNING_ALGORITHM[k.algorithm],
        canonicalization: CANONICALIZATION,
      })),
    });
    // RFC 6376 5.4: From must be signed, whatever the configured list says.
    this.fieldNames = unique(['From', ...opts.headers, ...opts.oversign]).join(':');
    this.oversign = unique(opts.oversign);
  }

  /** Called by mailauth once the body hash is final (from the Writable's _final). */
  override async finalize(): Promise<void> {
    if (!this.headers) return;
    // Every present field whose name is listed, bottom-up (mailauth's order), then one null instance per oversigned name.
    const present = getSigningHeaderLines(this.headers.parsed, this.fieldNames);
    const lines = { keys: [...present.headers.map((h) => h.casedKey), ...this.oversign].join(': '), headers: present.headers };
    const signTime = new Date();
    for (const sd of this.signatureData) {
      const algorithm = sd.privateKey.asymmetricKeyType as DkimAlgorithm;
      try {
        this.outcome.signatures.push({ algorithm, value: this.signOne(sd, lines, signTime) });
      } catch (err) {
        this.outcome.errors.push({ algorithm, message: (err as Error).message });
      }
    }
  }

  private signOne(sd: SignatureData, lines: { keys: string; headers: ParsedHeader[] }, signTime: Date): string {
    const { hashAlgo } = this.getAlgorithm(sd);
    const { canonicalization, bodyCanon } = this.getCanonicalization(sd);
    const bodyHash = this.bodyHashes.get(`${bodyCanon}:${hashAlgo}:${sd.maxBodyLength ?? ''}`)?.hash;
    if (!bodyHash) throw new Error('no body hash');
    const { canonicalizedHeader, dkimHeaderOpts } = generateCanonicalizedHeader('DKIM', lines, {
      signingDomain: sd.signingDomain,
      selector: sd.selector,
      algorithm: sd.algorithm,
      canonicalization,
      bodyHash,
      signTime,
    });
    // RFC 8463 3: Ed25519 signs the SHA-256 of the canonicalized header, RSA the data itself.
    const rsa = sd.privateKey.asymmetricKeyType === 'rsa';
    const data = rsa ? canonicalizedHeader : createHash('sha256').update(canonicalizedHeader).digest();
    dkimHeaderOpts.b = sign(rsa ? 'sha256' : null, data, sd.privateKey).toString('base64');
    return milterFolding(formatSignatureHeaderLine('DKIM', dkimHeaderOpts, true));
  }
}

/** Write the raw message (CRLF, header block then body) into `writable`; read `result()` once it has finished. */
export class MessageSigner {
  private readonly signer: OversigningSigner;

  constructor(opts: SignerOptions) {
    this.signer = new OversigningSigner(opts);
  }

  get writable(): Writable {
    return this.signer;
  }

  /** The signatures, once the writable has finished (after ending it, on 'finish'). */
  result(): SignOutcome {
    return this.signer.outcome;
  }
}

/**
 * "DKIM-Signature: v=1; …\r\n h=…" → "v=1; …\n\th=…". Only whitespace changes, and relaxed header
 * canonicalization reduces every run of it (folds included) to one space, so the signature holds.
 */
function milterFolding(line: string): string {
  return line.replace(/^DKIM-Signature:\s*/i, '').replace(/\r?\n[ \t]+/g, '\n\t');
}

function unique(names: readonly string[]): string[] {
  const seen = new Set<string>();
  return names.filter((n) => !seen.has(n.toLowerCase()) && seen.add(n.toLowerCase()));
}
