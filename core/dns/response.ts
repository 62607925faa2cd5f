/**
 * The DNS wire format for our client, as a pure codec (no sockets): build a query, and turn the
 * bytes of a response into an outcome. Encoding and decoding of the packets is dns-packet's; this
 * file decides what a response means (RFC 1035 §4.1, RFC 2308 for negative answers, RFC 5452 for
 * accepting only answers to the question we asked).
 *
 * - Answers follow CNAMEs inside the answer section (at most MAX_CNAME_HOPS links).
 * - TTL of an answer = the smallest TTL among the records used, CNAME links included; a TTL with
 *   the top bit set counts as 0 (RFC 2181 §8).
 * - Negative TTL = min(SOA TTL, SOA minimum) of the authority section's SOA (RFC 2308 §5), or
 *   undefined when the server sent none.
 * - Shapes match Node's dns.promises.resolve: TXT chunks are decoded as latin1 bytes, as c-ares
 *   hands them to Node; a root MX exchange ("0 ." null MX, RFC 7505) is ''.
 */
import dnsPacket from 'dns-packet';
import { DnsError } from './types.ts';

export const SUPPORTED_TYPES = ['A', 'AAAA', 'TXT', 'MX', 'PTR', 'CNAME', 'NS'] as const;
export type SupportedType = (typeof SUPPORTED_TYPES)[number];

/** EDNS(0) payload size we advertise: the DNS Flag Day 2020 value, safe from IP fragmentation. */
export const EDNS_UDP_SIZE = 1232;
const MAX_CNAME_HOPS = 16;
const TC_BIT = 1 << 9;

export interface Question {
  id: number;
  /** Lowercase, without the trailing dot. */
  name: string;
  type: SupportedType;
}

export type Outcome =
  | { kind: 'answer'; answer: unknown[]; ttl: number }
  /** NXDOMAIN (ENOTFOUND) or NOERROR without records of the type (ENODATA). */
  | { kind: 'negative'; code: 'ENOTFOUND' | 'ENODATA'; ttl: number | undefined }
  /** The server could not answer (SERVFAIL, REFUSED, ...): ask the next one. */
  | { kind: 'failure'; code: 'ESERVFAIL' | 'EREFUSED' | 'EBADRESP' }
  /** TC bit: repeat the query over TCP. */
  | { kind: 'truncated' }
  /** Not an answer to our question (wrong id or question, or a query): keep waiting. */
  | { kind: 'ignore' };

export function isSupportedType(type: string): type is SupportedType {
  return (SUPPORTED_TYPES as readonly string[]).includes(type);
}

/** Lowercase without the trailing dot; throws ENOTFOUND for names DNS cannot carry. */
export function normalizeName(name: string, type: string): string {
  const n = name.toLowerCase().replace(/\.$/, '');
  const labels = n.split('.');
  const valid =
    Buffer.byteLength(n) <= 253 &&
    (n === '' || labels.every((l) => l.length > 0 && Buffer.byteLength(l) <= 63));
  if (!valid) throw new DnsError('ENOTFOUND', name, type);
  return n;
}

export function randomId(): number {
  return Math.floor(Math.random() * 0x10000);
}

export function encodeQuery(q: Question, edns = true): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: q.id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: q.type, name: q.name === '' ? '.' : q.name, class: 'IN' }],
    additionals: edns
      ? [{ type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_SIZE, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }]
      : [],
  });
}

/** Only the fields we read, typed loosely: a fuzzed packet can hold anything dns-packet decodes. */
interface LooseRecord {
  type?: unknown;
  name?: unknown;
  ttl?: unknown;
  data?: unknown;
}

const sameName = (a: unknown, b: string): boolean =>
  typeof a === 'string' && a.toLowerCase().replace(/\.$/, '') === b;

function recordTtl(r: LooseRecord): number {
  const t = r.ttl;
  if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > 0x7fffffff) return 0;
  return t;
}

const bad = (): Outcome => ({ kind: 'failure', code: 'EBADRESP' });

/**
 * What a response packet means for question `q`. Never throws anything but DnsError (EBADRESP for
 * a packet carrying our id that cannot be decoded); anything else is an Outcome.
 */
export function interpretResponse(buf: Buffer, q: Question): Outcome {
  if (buf.length < 12) return { kind: 'ignore' };
  if (buf.readUInt16BE(0) !== q.id) return { kind: 'ignore' };
  const flags = buf.readUInt16BE(2);
  if ((flags & 0x8000) === 0) return { kind: 'ignore' };
  let packet: ReturnType<typeof dnsPacket.decode>;
  try {
    packet = dnsPacket.decode(buf);
  } catch {
    // A truncated packet may be cut mid-record: the header alone says "retry over TCP".
    if (flags & TC_BIT) return { kind: 'truncated' };
    throw new DnsError('EBADRESP', q.name, q.type);
  }
  const question = packet.questions?.[0];
  if (packet.questions?.length !== 1 || !question || !sameName(question.name, q.name) || question.type !== q.type) {
    // RFC 5452 §9.1: an answer to another question is not ours (or is spoofed).
    return { kind: 'ignore' };
  }
  if (packet.flag_tc) return { kind: 'truncated' };
  const rcode = (packet as { rcode?: unknown }).rcode;
  const answers = (packet.answers ?? []) as LooseRecord[];
  const authorities = (packet.authorities ?? []) as LooseRecord[];
  switch (rcode) {
    case 'NOERROR':
      return positive(answers, authorities, q);
    case 'NXDOMAIN':
      return { kind: 'negative', code: 'ENOTFOUND', ttl: negativeTtl(authorities) };
    case 'SERVFAIL':
      return { kind: 'failure', code: 'ESERVFAIL' };
    case 'REFUSED':
      return { kind: 'failure', code: 'EREFUSED' };
    default:
      // FORMERR, NOTIMP and the rest: this server cannot help us.
      return bad();
  }
}

function positive(answers: LooseRecord[], authorities: LooseRecord[], q: Question): Outcome {
  let name = q.name;
  let ttl = Infinity;
  if (q.type !== 'CNAME') {
    const seen = new Set<string>([name]);
    for (let hop = 0; hop < MAX_CNAME_HOPS; hop++) {
      const link = answers.find((r) => r.type === 'CNAME' && sameName(r.name, name));
      if (!link) break;
      if (typeof link.data !== 'string') return bad();
      name = link.data.toLowerCase().replace(/\.$/, '');
      if (seen.has(name)) return bad(); // a CNAME loop
      seen.add(name);
      ttl = Math.min(ttl, recordTtl(link));
    }
  }
  const answer: unknown[] = [];
  for (const r of answers) {
    if (r.type !== q.type || !sameName(r.name, name)) continue;
    const value = convert(q.type, r.data);
    if (value === undefined) return bad();
    answer.push(value);
    ttl = Math.min(ttl, recordTtl(r));
  }
  if (answer.length === 0) return { kind: 'negative', code: 'ENODATA', ttl: negativeTtl(authorities) };
  return { kind: 'answer', answer, ttl };
}

/** One record's data in Node's shape, or undefined when it does not have the type's shape. */
function convert(type: SupportedType, data: unknown): unknown {
  switch (type) {
    case 'A':
    case 'AAAA':
      return typeof data === 'string' ? data : undefined;
    case 'PTR':
    case 'CNAME':
    case 'NS':
      return typeof data === 'string' ? hostName(data) : undefined;
    case 'TXT': {
      const chunks = Array.isArray(data) ? data : [data];
      if (!chunks.every((c) => Buffer.isBuffer(c))) return undefined;
      return chunks.map((c: Buffer) => c.toString('latin1'));
    }
    case 'MX': {
      if (typeof data !== 'object' || data === null) return undefined;
      const { exchange, preference } = data as { exchange?: unknown; preference?: unknown };
      if (typeof exchange !== 'string' || typeof preference !== 'number') return undefined;
      return { exchange: hostName(exchange), priority: preference };
    }
  }
}

/** dns-packet writes the root name as '.'; Node (c-ares) as ''. */
const hostName = (name: string): string => (name === '.' ? '' : name.replace(/\.$/, ''));

function negativeTtl(authorities: LooseRecord[]): number | undefined {
  const soa = authorities.find((r) => r.type === 'SOA');
  if (!soa) return undefined;
  const minimum = (soa.data as { minimum?: unknown } | undefined)?.minimum;
  const min = typeof minimum === 'number' && minimum >= 0 && minimum <= 0x7fffffff ? minimum : 0;
  return Math.min(recordTtl(soa), min);
}

/** Length-prefixed TCP framing (RFC 1035 §4.2.2). */
export function frameTcp(query: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(query.length);
  return Buffer.concat([len, query]);
}
