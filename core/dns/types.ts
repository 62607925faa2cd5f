/**
 * The one DNS interface every check uses. Its shape is Node's `dns.promises.resolve(name, rrtype)`,
 * which is also what mailauth accepts as its `resolver` option:
 * - A / AAAA → string[]; TXT → string[][] (chunks per record); MX → { exchange, priority }[];
 *   PTR / CNAME / NS → string[].
 * - "No such name" rejects with code ENOTFOUND, "no record of that type" with ENODATA (mailauth and
 *   our checks read both as "none"); a timeout rejects with ETIMEOUT and anything else with its
 *   code (read as "temperror", never as a rejection of the message).
 */
export type DnsResolver = (name: string, rrtype: string) => Promise<unknown>;

export class DnsError extends Error {
  constructor(
    readonly code: 'ENOTFOUND' | 'ENODATA' | 'ETIMEOUT' | 'ESERVFAIL' | 'EREFUSED' | 'EBADRESP' | 'ECONNREFUSED',
    readonly hostname: string,
    readonly rrtype: string,
  ) {
    // "No such name" and "no such record" are answers, not faults, and mailauth makes one per
    // message (the BIMI lookup): skip capturing a stack trace for them.
    const stackTraceLimit = Error.stackTraceLimit;
    if (code === 'ENOTFOUND' || code === 'ENODATA') Error.stackTraceLimit = 0;
    super(`${rrtype} ${hostname}: ${code}`);
    Error.stackTraceLimit = stackTraceLimit;
    this.name = 'DnsError';
  }
}
