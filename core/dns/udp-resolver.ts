/**
 * A small stub resolver: asks the configured recursive servers over UDP (EDNS(0), 1232 bytes),
 * repeating the query over TCP when the answer comes back truncated (TC bit).
 *
 * - Each query gets a random id and its own connected UDP socket (a fresh random source port; the
 *   kernel drops datagrams from any other address). Answers with another id or question are
 *   ignored, not trusted (RFC 5452).
 * - Attempts cycle through the servers, `tries` rounds, each attempt waiting up to `timeoutMs`.
 *   SERVFAIL, REFUSED, an unreadable answer or an ICMP "port unreachable" moves on to the next
 *   server at once. The whole lookup gives up with ETIMEOUT after timeoutMs × tries.
 * - `resolveWithTtl` also reports TTLs for a cache: the smallest TTL of the records used, and for
 *   ENOTFOUND/ENODATA a NegativeAnswer error carrying the SOA's negative TTL when the server sent one.
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import { DnsError, type DnsResolver } from './types.ts';
import {
  encodeQuery,
  frameTcp,
  interpretResponse,
  isSupportedType,
  normalizeName,
  randomId,
  type Outcome,
  type Question,
} from './response.ts';

export interface UdpResolverOptions {
  /** 'IP', 'IP:port' or '[IPv6]:port'; empty: the system's servers (dns.getServers()). */
  servers: string[];
  timeoutMs: number;
  tries: number;
}

export interface TtlAnswer {
  answer: unknown[];
  /** Seconds. */
  ttl: number;
}

/** A resolver that also tells how long its answers may be kept. */
export interface TtlResolver extends DnsResolver {
  resolveWithTtl(name: string, rrtype: string): Promise<TtlAnswer>;
}

export interface UdpResolver extends TtlResolver {
  /** Abort lookups in flight (they reject with ECONNREFUSED) and refuse new ones. */
  close(): void;
}

/** ENOTFOUND / ENODATA, with the negative TTL from the authority section's SOA when present. */
export class NegativeAnswer extends DnsError {
  constructor(
    code: 'ENOTFOUND' | 'ENODATA',
    hostname: string,
    rrtype: string,
    readonly ttl: number | undefined,
  ) {
    super(code, hostname, rrtype);
  }
}

export interface ServerAddress {
  host: string;
  port: number;
  family: 4 | 6;
}

/** Parse one server as written in config or returned by dns.getServers(). */
export function parseServer(text: string): ServerAddress {
  const s = text.trim();
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  const v4port = /^([\d.]+):(\d+)$/.exec(s);
  const host = bracketed ? bracketed[1]! : v4port ? v4port[1]! : s;
  const port = Number(bracketed?.[2] ?? v4port?.[2] ?? 53);
  const family = net.isIP(host);
  if ((family !== 4 && family !== 6) || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`invalid DNS server ${JSON.stringify(text)}: expected IP, IP:port or [IPv6]:port`);
  }
  return { host, port, family };
}

export function createUdpResolver(opts: UdpResolverOptions): UdpResolver {
  const servers = (opts.servers.length > 0 ? opts.servers : dns.getServers()).map(parseServer);
  if (servers.length === 0) throw new Error('no DNS servers configured and none found in the system configuration');
  const timeoutMs = opts.timeoutMs;
  const tries = Math.max(1, opts.tries);
  /** Lookups in flight: close() aborts them. */
  const live = new Set<AbortController>();
  let closed = false;

  async function resolveWithTtl(name: string, rrtype: string): Promise<TtlAnswer> {
    const type = rrtype.toUpperCase();
    if (!isSupportedType(type)) throw new TypeError(`unsupported DNS record type ${JSON.stringify(rrtype)}`);
    const qname = normalizeName(name, type);
    if (closed) throw new DnsError('ECONNREFUSED', qname, type);
    const abort = new AbortController();
    live.add(abort);
    const deadline = Date.now() + timeoutMs * tries;
    let lastFailure: DnsError['code'] = 'ETIMEOUT';
    try {
      for (let attempt = 0; attempt < tries * servers.length; attempt++) {
        const left = deadline - Date.now();
        if (left <= 0 || abort.signal.aborted) break;
        const server = servers[attempt % servers.length]!;
        const q: Question = { id: randomId(), name: qname, type };
        let outcome = await exchangeUdp(server, q, Math.min(timeoutMs, left), abort.signal);
        if (outcome.kind === 'truncated') {
          outcome = await exchangeTcp(server, q, Math.max(1, deadline - Date.now()), abort.signal);
        }
        switch (outcome.kind) {
          case 'answer':
            return { answer: outcome.answer, ttl: outcome.ttl };
          case 'negative':
            throw new NegativeAnswer(outcome.code, qname, type, outcome.ttl);
          case 'failure':
            lastFailure = outcome.code;
            break;
          case 'timeout':
            // A failure answer from another server tells more than the silence: keep it.
            break;
        }
      }
      throw new DnsError(abort.signal.aborted ? 'ECONNREFUSED' : lastFailure, qname, type);
    } finally {
      live.delete(abort);
    }
  }

  const resolve = (async (name: string, rrtype: string) => (await resolveWithTtl(name, rrtype)).answer) as UdpResolver;
  resolve.resolveWithTtl = resolveWithTtl;
  resolve.close = () => {
    closed = true;
    for (const a of live) a.abort();
  };
  return resolve;
}

type Exchange =
  | Exclude<Outcome, { kind: 'ignore' | 'failure' }>
  | { kind: 'failure'; code: DnsError['code'] }
  | { kind: 'timeout' };

const BAD: Exchange = { kind: 'failure', code: 'EBADRESP' };
const REFUSED: Exchange = { kind: 'failure', code: 'ECONNREFUSED' };

/** interpretResponse, with its EBADRESP (an undecodable answer carrying our id) as an outcome. */
function interpret(msg: Buffer, q: Question): Outcome {
  try {
    return interpretResponse(msg, q);
  } catch {
    return { kind: 'failure', code: 'EBADRESP' };
  }
}

/**
 * Run one exchange to its end exactly once: the first answer, the timeout or the abort wins, the
 * socket is released, and later events are ignored.
 */
function settleOnce(
  timeoutMs: number,
  signal: AbortSignal,
  release: () => void,
  run: (finish: (e: Exchange) => void) => void,
): Promise<Exchange> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (e: Exchange): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      release();
      resolve(e);
    };
    const timer = setTimeout(() => finish({ kind: 'timeout' }), timeoutMs);
    const onAbort = (): void => finish(REFUSED);
    signal.addEventListener('abort', onAbort);
    run(finish);
  });
}

/** One query to one server over UDP: the first datagram that answers our question, or a timeout. */
function exchangeUdp(server: ServerAddress, q: Question, timeoutMs: number, signal: AbortSignal): Promise<Exchange> {
  const socket = dgram.createSocket(server.family === 6 ? 'udp6' : 'udp4');
  let closed = false;
  const release = () => {
    closed = true;
    socket.close();
  };
  return settleOnce(timeoutMs, signal, release, (finish) => {
    // An ICMP "port unreachable" on the connected socket arrives here as ECONNREFUSED.
    socket.on('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ECONNREFUSED' ? REFUSED : BAD));
    socket.on('message', (msg: Buffer) => {
      const outcome = interpret(msg, q);
      if (outcome.kind !== 'ignore') finish(outcome);
    });
    socket.connect(server.port, server.host, () => {
      if (closed) return; // timed out or aborted while connecting: the socket is gone
      socket.send(encodeQuery(q), (err) => {
        if (err) finish((err as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? REFUSED : BAD);
      });
    });
  });
}

/** The same query over TCP (RFC 7766), for answers too large for UDP. */
function exchangeTcp(server: ServerAddress, q: Question, timeoutMs: number, signal: AbortSignal): Promise<Exchange> {
  const socket = net.connect({ host: server.host, port: server.port });
  let buf = Buffer.alloc(0);
  return settleOnce(timeoutMs, signal, () => socket.destroy(), (finish) => {
    socket.on('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ECONNREFUSED' ? REFUSED : BAD));
    socket.on('close', () => finish(BAD));
    socket.on('connect', () => socket.write(frameTcp(encodeQuery(q))));
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        const outcome = interpret(msg, q);
        // Over TCP a TC bit cannot be acted on: the answer is unusable.
        if (outcome.kind === 'truncated') return finish(BAD);
        if (outcome.kind !== 'ignore') return finish(outcome);
      }
    });
  });
}
