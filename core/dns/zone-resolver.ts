/**
 * A resolver answering from a zone map, recording every call: for unit tests, so they can assert
 * which lookups happened and in what order (as mailauth's own dns-zone.js test helper does).
 *   zoneResolver({ 'example.com': { TXT: [['v=spf1 -all']], MX: [{ exchange: 'mx.example.com', priority: 10 }] },
 *                  'slow.example': { TXT: 'ETIMEOUT' } })
 */
import { DnsError, type DnsResolver } from './types.ts';

type Answer = unknown[] | DnsError['code'];
export type Zone = Record<string, Partial<Record<string, Answer>>>;

export interface RecordingResolver extends DnsResolver {
  calls: Array<{ name: string; rrtype: string }>;
}

export function zoneResolver(zone: Zone, opts: { delayMs?: number } = {}): RecordingResolver {
  const lower: Zone = Object.fromEntries(Object.entries(zone).map(([k, v]) => [k.toLowerCase().replace(/\.$/, ''), v]));
  const calls: RecordingResolver['calls'] = [];
  const resolve = (async (name: string, rrtype: string) => {
    const key = name.toLowerCase().replace(/\.$/, '');
    const type = rrtype.toUpperCase();
    calls.push({ name: key, rrtype: type });
    if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
    const node = lower[key];
    if (!node) throw new DnsError('ENOTFOUND', key, type);
    const answer = node[type];
    if (answer === undefined) throw new DnsError('ENODATA', key, type);
    if (typeof answer === 'string') throw new DnsError(answer, key, type);
    return structuredClone(answer);
  }) as RecordingResolver;
  resolve.calls = calls;
  return resolve;
}
