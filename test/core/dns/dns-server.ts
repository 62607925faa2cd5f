// A tiny programmable DNS server (UDP and TCP on one loopback port) built with dns-packet, for
// behaviour dnsmasq will not show on demand: truncated UDP answers, chosen TTLs and SOAs,
// SERVFAIL, spoofed ids, slow answers. Records every query it receives.
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket, { type Answer, type DecodedPacket, type Packet } from 'dns-packet';

export type Transport = 'udp' | 'tcp';

export interface ReceivedQuery {
  name: string;
  type: string;
  transport: Transport;
}

/**
 * Returns the responses to send (packets or raw bytes, in order; none = stay silent). A packet
 * without an id gets the query's, and without questions the query's question.
 */
export type Handler = (query: DecodedPacket, transport: Transport) => Array<Packet | Buffer> | Promise<Array<Packet | Buffer>>;

export interface DnsServer {
  server: string;
  port: number;
  queries: ReceivedQuery[];
  close(): Promise<void>;
}

/** A response packet answering `query` with the given records and rcode flags. */
export function reply(query: DecodedPacket, answers: Answer[], opts: { rcode?: number; tc?: boolean; authorities?: Answer[] } = {}): Packet {
  return {
    type: 'response',
    id: query.id,
    flags: dnsPacket.RECURSION_AVAILABLE | (opts.tc ? dnsPacket.TRUNCATED_RESPONSE : 0) | (opts.rcode ?? 0),
    questions: query.questions,
    answers,
    authorities: opts.authorities ?? [],
  };
}

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

function encode(query: DecodedPacket, r: Packet | Buffer): Buffer {
  if (Buffer.isBuffer(r)) return r;
  return dnsPacket.encode({ ...r, id: r.id ?? query.id, questions: r.questions ?? query.questions });
}

export async function startDnsServer(handler: Handler): Promise<DnsServer> {
  const queries: ReceivedQuery[] = [];
  const sockets = new Set<net.Socket>();
  let closed = false;
  const record = (q: DecodedPacket, transport: Transport): void => {
    const question = q.questions?.[0];
    queries.push({ name: question?.name ?? '', type: question?.type ?? '', transport });
  };

  for (let attempt = 1; ; attempt++) {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, '127.0.0.1', () => resolve());
    });
    const port = udp.address().port;
    const tcp = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
      let buf = Buffer.alloc(0);
      socket.on('data', async (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const query = dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0)));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
          record(query, 'tcp');
          for (const r of await handler(query, 'tcp')) {
            const bytes = encode(query, r);
            const len = Buffer.alloc(2);
            len.writeUInt16BE(bytes.length);
            if (!socket.destroyed) socket.write(Buffer.concat([len, bytes]));
          }
        }
      });
    });
    const listening = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false));
      tcp.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!listening) {
      udp.close();
      if (attempt < 5) continue;
      throw new Error('startDnsServer: could not bind TCP on the UDP port');
    }
    udp.on('message', async (msg, rinfo) => {
      let query: DecodedPacket;
      try {
        query = dnsPacket.decode(msg);
      } catch {
        return;
      }
      record(query, 'udp');
      for (const r of await handler(query, 'udp')) if (!closed) udp.send(encode(query, r), rinfo.port, rinfo.address);
    });
    return {
      server: `127.0.0.1:${port}`,
      port,
      queries,
      async close() {
        closed = true;
        for (const s of sockets) s.destroy();
        await Promise.all([new Promise<void>((r) => udp.close(() => r())), new Promise<void>((r) => tcp.close(() => r()))]);
      },
    };
  }
}

/** A UDP socket that reads queries and never answers; counts what it got. */
export async function startBlackHole(): Promise<{ server: string; received(): number; close(): Promise<void> }> {
  const socket = dgram.createSocket('udp4');
  let count = 0;
  socket.on('message', () => count++);
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  return {
    server: `127.0.0.1:${socket.address().port}`,
    received: () => count,
    close: () => new Promise<void>((r) => socket.close(() => r())),
  };
}
