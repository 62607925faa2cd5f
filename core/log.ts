/** Structured JSON logs (pino). Sessions derive child loggers carrying `conn` and, once known, `qid`. */
import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * Stdout is written synchronously (as Node writes pipes on Linux anyway). The asynchronous
 * destination flushes at exit with sonic-boom's flushSync, which retries a write failing with
 * EPIPE forever: with the log reader gone, SIGTERM would hang the process until SIGKILL.
 */
export function createLogger(level: string, service?: string, destination?: pino.DestinationStream): Logger {
  const base = service ? { service } : {};
  const stdout = () => pino.destination({ dest: 1, sync: true });
  return pino({ level, base, timestamp: pino.stdTimeFunctions.isoTime }, destination ?? stdout());
}

/** A logger that drops everything; handy for benchmarks and tests that assert on behaviour. */
export const silentLogger: Logger = pino({ level: 'silent' });
