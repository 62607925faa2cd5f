/**
 * The raw message (header block, then body) as a stream, fed from the milter's callbacks, for
 * checks that hand the whole message to a library or a daemon (mailauth, clamd). Each write waits
 * for the consumer (backpressure), so a 50 MB message never sits in memory.
 */
import { PassThrough } from 'node:stream';
import { once } from 'node:events';
import { rawHeaderBlock } from '../headers.ts';
import type { MessageState } from './types.ts';

export class MessageStream {
  readonly stream = new PassThrough({ highWaterMark: 256 * 1024 });
  private headersSent = false;

  constructor() {
    // A consumer that gives up destroys the stream; later writes must not become an uncaught error.
    this.stream.on('error', () => undefined);
  }
  /** Bytes written so far (headers included). */
  bytes = 0;

  /** A body chunk; the header block goes first. */
  async write(message: MessageState, chunk: Buffer): Promise<void> {
    if (!this.headersSent) await this.push(rawHeaderBlock(message.headers));
    this.headersSent = true;
    await this.push(chunk);
  }

  /** End of message: headers if no body came, then end. */
  async end(message: MessageState): Promise<void> {
    if (!this.headersSent) await this.push(rawHeaderBlock(message.headers));
    this.headersSent = true;
    this.stream.end();
  }

  destroy(): void {
    this.stream.destroy();
  }

  private async push(buf: Buffer): Promise<void> {
    if (this.stream.destroyed) return;
    this.bytes += buf.length;
    if (this.stream.write(buf)) return;
    // Wait for the consumer, or for it to give up; the loser's listener is removed either way.
    const done = new AbortController();
    try {
      await Promise.race([once(this.stream, 'drain', { signal: done.signal }), once(this.stream, 'close', { signal: done.signal })]);
    } finally {
      done.abort();
    }
  }
}

/** Get or create a check's per-message state. */
export function stateOf<T>(message: MessageState, key: string, init: () => T): T {
  let v = message.checkState.get(key) as T | undefined;
  if (v === undefined) message.checkState.set(key, (v = init()));
  return v;
}
