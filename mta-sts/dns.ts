/**
 * `ceerion dns records|check` for a domain that has a policy in `mtaSts.policies`: the `_mta-sts`
 * TXT record carries the id the server serves, the zone comment describes the real policy, and
 * `dns check` insists on that id. A stale id is the one MTA-STS mistake nothing else catches:
 * senders keep their cached policy until max_age runs out.
 */
import type { ExpectedRecord } from '../admin/dns-records.ts';
import type { CompiledPolicy } from './policy.ts';

const txtValues = (found: unknown[]) => found.map((r) => (Array.isArray(r) ? r.join('') : String(r)));

/** The records with the MTA-STS one matched to `policy`; other records are returned unchanged. */
export function withMtaStsPolicy(records: readonly ExpectedRecord[], policy: CompiledPolicy | undefined): ExpectedRecord[] {
  if (!policy) return [...records];
  const { domain, id } = policy;
  return records.map((r) => {
    if (r.what !== 'MTA-STS') return r;
    const describe = `mode: ${policy.policy.mode}, mx: ${policy.policy.mx.join(' ') || '(none)'}, max_age: ${policy.policy.maxAge}`;
    const zone = r.zone
      .split('\n')
      .map((line) => (line.startsWith('; serve the policy') ? `; serve the policy at https://mta-sts.${domain}/.well-known/mta-sts.txt (${describe}): ceerion mta-sts serve behind TLS` : line))
      .join('\n');
    return {
      ...r,
      zone,
      judge: (found: unknown[]) => {
        const first = r.judge(found);
        if (first.status !== 'ok') return first;
        const published = /\bid=([A-Za-z0-9]{1,32})\b/.exec(txtValues(found).find((v) => /^v=STSv1/i.test(v)) ?? '')?.[1];
        return published === id
          ? first
          : { status: 'differs' as const, detail: `id=${published} is published; the served policy has id=${id}` };
      },
    };
  });
}
