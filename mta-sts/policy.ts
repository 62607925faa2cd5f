/**
 * MTA-STS policy files (RFC 8461 §3.2) as pure functions: render a configured policy to the text
 * served at /.well-known/mta-sts.txt, derive the `id` of the `_mta-sts` TXT record from that text,
 * and parse a policy back (tests, and a check of what a server actually serves).
 *
 * The id is a hash of the exact bytes served, so it changes whenever the policy changes and never
 * otherwise: senders refetch the policy only when the TXT id differs from the id they cached, and
 * a hand-kept id that someone forgets to bump leaves them on a stale policy for max_age.
 */
import { createHash } from 'node:crypto';
import { DOMAIN_NAME, MAX_AGE_LIMIT, type MtaStsConfig, type MtaStsPolicy } from '../core/config/mta-sts.ts';

/** The path senders fetch, on the host `mta-sts.DOMAIN` (RFC 8461 §3.3). */
export const POLICY_PATH = '/.well-known/mta-sts.txt';

/** Senders must not read more than 64 KiB of policy (RFC 8461 §3.3); we refuse to render more. */
export const MAX_POLICY_BYTES = 64 * 1024;

export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

/**
 * The policy file: `version` first (the RFC requires it), then mode, one `mx:` line per pattern,
 * and max_age, each line ending in CRLF as in the RFC's examples.
 */
export function renderPolicy(p: MtaStsPolicy): string {
  const lines = ['version: STSv1', `mode: ${p.mode}`, ...p.mx.map((mx) => `mx: ${mx}`), `max_age: ${p.maxAge}`];
  const text = lines.map((l) => `${l}\r\n`).join('');
  if (Buffer.byteLength(text) > MAX_POLICY_BYTES) throw new PolicyError(`policy is ${Buffer.byteLength(text)} bytes; senders read at most ${MAX_POLICY_BYTES}`);
  return text;
}

/** RFC 8461 §3.1: id = 1*32(ALPHA / DIGIT). 32 hex digits of SHA-256 (128 bits) fit exactly. */
export function policyId(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex').slice(0, 32);
}

/** The value of the `_mta-sts.DOMAIN` TXT record for a policy text. */
export function txtRecord(text: string): string {
  return `v=STSv1; id=${policyId(text)}`;
}

export interface CompiledPolicy {
  domain: string;
  policy: MtaStsPolicy;
  text: string;
  id: string;
}

/** Domain (lower case, no trailing dot) → its rendered policy and id; built once per config. */
export function compilePolicies(config: Pick<MtaStsConfig, 'policies'>): Map<string, CompiledPolicy> {
  const out = new Map<string, CompiledPolicy>();
  for (const [key, policy] of Object.entries(config.policies)) {
    const domain = key.toLowerCase().replace(/\.$/, '');
    const text = renderPolicy(policy);
    out.set(domain, { domain, policy, text, id: policyId(text) });
  }
  return out;
}

/** The compiled policy of one domain, or undefined when it is not configured. */
export function policyFor(config: Pick<MtaStsConfig, 'policies'>, domain: string): CompiledPolicy | undefined {
  return compilePolicies(config).get(domain.toLowerCase().replace(/\.$/, ''));
}

const FIELD = /^([A-Za-z0-9][A-Za-z0-9_.-]{0,31}):[ \t]*([\x21-\x3a\x3c\x3e-\x7e](?:[ \t\x21-\x3a\x3c\x3e-\x7e]*[\x21-\x3a\x3c\x3e-\x7e])?)[ \t]*$/;

/**
 * Parse a policy file strictly by the RFC's ABNF (§3.2): `key: value` lines separated by LF or
 * CRLF, `version: STSv1` first, exactly one mode and max_age, mx patterns as host names (or
 * `*.name`), unknown keys ignored. Throws PolicyError naming the first problem.
 */
export function parsePolicy(text: string): MtaStsPolicy {
  if (Buffer.byteLength(text) > MAX_POLICY_BYTES) throw new PolicyError('policy over 64 KiB');
  const lines = text.split(/\r?\n/);
  if (lines.at(-1) === '') lines.pop();
  const fields: Array<[string, string]> = lines.map((line, i) => {
    const m = FIELD.exec(line);
    if (!m) throw new PolicyError(`line ${i + 1} is not "key: value": ${JSON.stringify(line.slice(0, 80))}`);
    return [m[1]!, m[2]!];
  });
  if (fields[0]?.[0] !== 'version' || fields[0][1] !== 'STSv1') throw new PolicyError('the first line must be "version: STSv1"');
  const one = (key: string): string => {
    const values = fields.filter(([k]) => k === key).map(([, v]) => v);
    if (values.length !== 1) throw new PolicyError(`${values.length === 0 ? 'no' : 'more than one'} ${key} field`);
    return values[0]!;
  };
  const mode = one('mode');
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') throw new PolicyError(`mode ${JSON.stringify(mode)} is not enforce, testing or none`);
  const age = one('max_age');
  if (!/^\d{1,10}$/.test(age) || Number(age) > MAX_AGE_LIMIT) throw new PolicyError(`max_age ${JSON.stringify(age)} is not 0..${MAX_AGE_LIMIT}`);
  const mx = fields.filter(([k]) => k === 'mx').map(([, v]) => v.toLowerCase());
  for (const m of mx) if (!DOMAIN_NAME.test(m.startsWith('*.') ? m.slice(2) : m)) throw new PolicyError(`mx ${JSON.stringify(m)} is not a host name or *.domain`);
  if (mode !== 'none' && mx.length === 0) throw new PolicyError(`mode ${mode} without mx`);
  return { mode, mx, maxAge: Number(age) };
}
