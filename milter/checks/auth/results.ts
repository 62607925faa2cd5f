/**
 * Authentication-Results handling (RFC 8601), without I/O:
 * - which incoming result headers claim our authserv-id (forged, unless from a trusted relay);
 * - our own headers from mailauth's output, refolded the way Postfix wants ("\n" + whitespace);
 * - the DMARC decision: the sender's policy, per-domain overrides and `pct` (RFC 7489 6.6.4:
 *   a message not sampled gets the next milder policy).
 */
import type { AuthConfig } from '../../../core/config/schema.ts';
import { deleteHeaders, type HeaderField } from '../../headers.ts';
import type { Modification } from '../../protocol/responses.ts';

/** The authserv-id an A-R (or ARC-Authentication-Results, after its `i=N;`) names. */
export function authservIdOf(h: HeaderField): string | undefined {
  let v = h.value.replace(/\([^)]*\)/g, ' ').trim();
  if (/^arc-authentication-results$/i.test(h.name)) v = v.replace(/^i\s*=\s*\d+\s*;/i, '').trim();
  const id = /^([^\s;]+)/.exec(v)?.[1];
  return id?.toLowerCase();
}

const RESULT_HEADERS = ['Authentication-Results', 'ARC-Authentication-Results'];

/** Deletions (highest index first) of every result header that claims our authserv-id. */
export function forgedResultHeaders(headers: readonly HeaderField[], authservId: string): Modification[] {
  const ours = authservId.toLowerCase();
  return RESULT_HEADERS.flatMap((name) => deleteHeaders(headers, name, (h) => authservIdOf(h) === ours));
}

/** mailauth's `headers` output ("Name: value\r\n continuation...") as fields with milter folding. */
export function parseHeaderBlock(block: string): HeaderField[] {
  const fields: HeaderField[] = [];
  for (const line of block.split(/\r?\n(?![ \t])/)) {
    const m = /^([^:\s]+):\s?([^]*)$/.exec(line);
    if (m) fields.push({ name: m[1]!, value: m[2]!.replace(/\r?\n/g, '\n').trimEnd() });
  }
  return fields;
}

export interface DmarcOutcome {
  result: string;
  domain?: string;
  policy?: string;
  pct?: number;
}

export type DmarcAction =
  | { kind: 'none'; why: string }
  | { kind: 'reject'; domain: string; why: string }
  | { kind: 'quarantine'; domain: string; why: string };

const MILDER: Record<string, 'quarantine' | 'none'> = { reject: 'quarantine', quarantine: 'none' };

export function dmarcAction(d: DmarcOutcome, cfg: AuthConfig['dmarc'], random: () => number): DmarcAction {
  if (d.result !== 'fail' || !d.domain) return { kind: 'none', why: `dmarc=${d.result}` };
  const override = cfg.overrides[d.domain.toLowerCase()];
  let policy = override ?? d.policy ?? 'none';
  let why = override ? `override for ${d.domain}: p=${override}` : `p=${policy}`;
  // pct applies to the published policy only; an admin's override is applied as written.
  if (!override && d.pct !== undefined && d.pct < 100 && random() * 100 >= d.pct && MILDER[policy]) {
    policy = MILDER[policy]!;
    why += ` (pct=${d.pct}: not sampled, ${policy} applies)`;
  }
  if (!cfg.enforce) return { kind: 'none', why: `${why}, not enforced` };
  if (policy === 'reject') return { kind: 'reject', domain: d.domain, why };
  if (policy === 'quarantine') return { kind: 'quarantine', domain: d.domain, why };
  return { kind: 'none', why };
}
