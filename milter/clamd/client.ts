/**
 * A clamd client over TCP or a unix socket (Postfix notation: `unix:/run/clamav/clamd.ctl`,
 * `inet:127.0.0.1:3310`). scanStream streams a Readable to clamd with INSTREAM: the source is
 * paused while the socket is full, so a large message never sits in memory, and only `maxBytes`
 * are sent (clamd refuses more than its StreamMaxLength). One deadline covers connect, streaming
 * and clamd's scan; every way out destroys the socket.
 */
import net from 'node:net';
import type { Readable } from 'node:stream';
import { parseListen } from '../../core/listen.ts';
import {
  DEFAULT_MAX_REPLY_BYTES,
  END_OF_STREAM,
  INSTREAM_COMMAND,
  PING_COMMAND,
  ReplyDecoder,
  frameChunk,
  parseReply,
} from './instream.ts';

export type ScanResult =
  | { kind: 'clean'; bytes: number; truncated: boolean; ms: number }
  | { kind: 'virus'; name: string; bytes: number; truncated: boolean; ms: number };

export interface ScanOptions {
  /** Deadline for the whole scan: connect, streaming and clamd's answer. */
  timeoutMs: number;
  /** Bytes sent at most; the rest of the source is read and dropped, and the result says `truncated`. */
  maxBytes: number;
  signal?: AbortSignal;
  maxReplyBytes?: number;
}

/**
 * Why a scan gave no answer: clamd not there, too slow, the scan was called off, the connection
 * broke or the reply made no sense, clamd answered ERROR, or the source stream failed.
 */
export type ClamdFailure = 'unreachable' | 'timeout' | 'aborted' | 'closed' | 'protocol' | 'clamd' | 'source';

export class ClamdError extends Error {
  constructor(
    readonly reason: ClamdFailure,
    message: string,
  ) {
    super(message);
    this.name = 'ClamdError';
  }
}

interface Exchange {
  socket: net.Socket;
  /** Settle once; the socket is destroyed and the deadline cleared. */
  fail(err: ClamdError): void;
  done(): boolean;
}

/**
 * Connect, arm the deadline and the abort signal, decode replies. `onReply` gets the first reply;
 * `onConnect` starts the request. Errors before the connection is up mean clamd is unreachable.
 */
function exchange(
  address: string,
  opts: { timeoutMs: number; signal?: AbortSignal; maxReplyBytes?: number },
  handlers: { onConnect(x: Exchange): void; onReply(text: string, x: Exchange): void; onFail(err: ClamdError): void },
): Exchange {
  const addr = parseListen(address);
  const socket = addr.kind === 'unix' ? net.connect(addr.path) : net.connect(addr.port, addr.host);
  const decoder = new ReplyDecoder(opts.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES);
  let settled = false;
  let connected = false;
  const timer = setTimeout(
    () => x.fail(new ClamdError('timeout', `clamd ${address} gave no answer within ${opts.timeoutMs} ms`)),
    opts.timeoutMs,
  );
  const onAbort = () => x.fail(new ClamdError('aborted', `scan on clamd ${address} aborted`));
  const finish = () => {
    settled = true;
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
    socket.destroy();
  };
  const x: Exchange = {
    socket,
    fail(err) {
      if (settled) return;
      finish();
      handlers.onFail(err);
    },
    done: () => settled,
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();
  socket.on('connect', () => {
    connected = true;
    if (!settled) handlers.onConnect(x);
  });
  socket.on('data', (chunk: Buffer) => {
    if (settled) return;
    let replies: string[];
    try {
      replies = decoder.push(chunk);
    } catch (err) {
      return x.fail(new ClamdError('protocol', `clamd ${address}: ${(err as Error).message}`));
    }
    const [first] = replies;
    if (first === undefined) return;
    finish();
    handlers.onReply(first, x);
  });
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (connected) x.fail(new ClamdError('closed', `clamd ${address}: ${err.code ?? err.message}`));
    else x.fail(new ClamdError('unreachable', `clamd ${address} unreachable: ${err.code ?? err.message}`));
  });
  socket.on('close', () => x.fail(new ClamdError('closed', `clamd ${address} closed the connection without a reply`)));
  return x;
}

/** Scan `source` with INSTREAM. Resolves clean or virus; rejects with a ClamdError otherwise. */
export function scanStream(address: string, source: Readable, opts: ScanOptions): Promise<ScanResult> {
  return new Promise<ScanResult>((resolve, reject) => {
    const started = performance.now();
    let sent = 0;
    let truncated = false;
    let ended = false;
    let x: Exchange | undefined;

    // The error listener stays: a source that fails after the scan must not crash the process.
    const detach = () => {
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('close', onClose);
      x?.socket.off('drain', onDrain);
    };
    const write = (data: Buffer) => {
      const [head, body] = frameChunk(data);
      sent += data.length;
      x!.socket.write(head);
      if (!x!.socket.write(body)) source.pause();
    };
    const endStream = () => {
      ended = true;
      detach();
      x!.socket.write(END_OF_STREAM);
      // Past the cap the rest is read and dropped, so whoever writes the source is never stuck.
      if (truncated) source.resume();
    };
    function onData(chunk: Buffer | string) {
      const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      if (data.length === 0) return; // a zero-length chunk would end the stream early
      const room = opts.maxBytes - sent;
      if (data.length <= room) return write(data);
      truncated = true;
      if (room > 0) write(data.subarray(0, room));
      endStream();
    }
    function onEnd() {
      endStream();
    }
    function onSourceError(err: Error) {
      x?.fail(new ClamdError('source', `message stream failed: ${err.message}`));
    }
    function onClose() {
      if (!ended) x?.fail(new ClamdError('source', 'message stream closed before its end'));
    }
    function onDrain() {
      if (!ended) source.resume();
    }

    source.on('error', onSourceError);
    try {
      x = exchange(address, opts, {
        onConnect(ex) {
          if (source.destroyed && !source.readableEnded) return ex.fail(new ClamdError('source', 'message stream destroyed before the scan'));
          ex.socket.write(INSTREAM_COMMAND);
          ex.socket.on('drain', onDrain);
          source.on('close', onClose);
          source.on('end', onEnd);
          source.on('data', onData);
          if (source.readableEnded) onEnd();
        },
        onReply(text) {
          detach();
          const reply = parseReply(text);
          const ms = performance.now() - started;
          if (reply.kind === 'error') {
            source.destroy();
            return reject(new ClamdError('clamd', `clamd ${address}: ${reply.text}`));
          }
          if (!ended) {
            source.destroy();
            return reject(new ClamdError('protocol', `clamd ${address} answered before the end of the stream: ${text}`));
          }
          resolve(reply.kind === 'virus' ? { kind: 'virus', name: reply.name, bytes: sent, truncated, ms } : { kind: 'clean', bytes: sent, truncated, ms });
        },
        onFail(err) {
          detach();
          source.destroy();
          reject(err);
        },
      });
    } catch (err) {
      reject(new ClamdError('unreachable', `clamd ${address}: ${(err as Error).message}`));
    }
  });
}

/** `zPING` → `PONG`: resolves when clamd answers, rejects with a ClamdError otherwise. */
export function ping(address: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    try {
      exchange(address, { timeoutMs: opts.timeoutMs ?? 2000, ...(opts.signal ? { signal: opts.signal } : {}) }, {
        onConnect: (x) => void x.socket.write(PING_COMMAND),
        onReply: (text) =>
          text === 'PONG' ? resolve() : reject(new ClamdError('protocol', `clamd ${address} answered PING with ${JSON.stringify(text.slice(0, 80))}`)),
        onFail: reject,
      });
    } catch (err) {
      reject(new ClamdError('unreachable', `clamd ${address}: ${(err as Error).message}`));
    }
  });
}
