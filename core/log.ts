/** Structured JSON logs (pino). Sessions derive child loggers carrying `conn` and, once known, `qid`. */
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, service?: string, destination?: pino.DestinationStream): Logger {
  const base = service ? { service } : {};
  return pino({ level, base, timestamp: pino.stdTimeFunctions.isoTime }, destination ?? pino.destination(1));
}

/** A logger that drops everything; handy for benchmarks and tests that assert on behaviour. */
export const silentLogger: Logger = pino({ level: 'silent' });
