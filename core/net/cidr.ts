/**
 * Address-range matching for config lists (internal networks, trusted relays, signing networks).
 * IPv4-mapped IPv6 addresses (::ffff:192.0.2.1) match IPv4 ranges, as clients often arrive so.
 */
import net from 'node:net';

interface Range {
  family: 4 | 6;
  bytes: Buffer;
  bits: number;
}

function toBytes(addr: string): { family: 4 | 6; bytes: Buffer } | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  if (mapped) addr = mapped[1]!;
  const family = net.isIP(addr);
  if (family === 4) return { family: 4, bytes: Buffer.from(addr.split('.').map(Number)) };
  if (family !== 6) return undefined;
  const sl = new net.SocketAddress({ address: addr, family: 'ipv6' });
  // Expand "::" by hand: SocketAddress normalises but does not give bytes.
  const [head, tail] = sl.address.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const bytes = Buffer.alloc(16);
  groups.forEach((g, i) => bytes.writeUInt16BE(parseInt(g || '0', 16), i * 2));
  return { family: 6, bytes };
}

export function parseCidr(spec: string): Range {
  const [addr, bitsText] = spec.split('/');
  const parsed = toBytes(addr ?? '');
  if (!parsed) throw new Error(`not an address or range: ${spec}`);
  const max = parsed.family === 4 ? 32 : 128;
  const bits = bitsText === undefined ? max : Number(bitsText);
  if (!Number.isInteger(bits) || bits < 0 || bits > max) throw new Error(`bad prefix length in ${spec}`);
  return { ...parsed, bits };
}

function inRange(addr: { family: 4 | 6; bytes: Buffer }, r: Range): boolean {
  if (addr.family !== r.family) return false;
  const full = Math.floor(r.bits / 8);
  if (!addr.bytes.subarray(0, full).equals(r.bytes.subarray(0, full))) return false;
  const rest = r.bits % 8;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (addr.bytes[full]! & mask) === (r.bytes[full]! & mask);
}

/** A matcher over a list of ranges; an address that does not parse matches nothing. */
export function cidrMatcher(specs: readonly string[]): (address: string | undefined) => boolean {
  const ranges = specs.map(parseCidr);
  // Nothing listed (the usual case): no need to parse every address that is asked about.
  if (ranges.length === 0) return () => false;
  return (address) => {
    if (!address) return false;
    const a = toBytes(address);
    return !!a && ranges.some((r) => inRange(a, r));
  };
}
