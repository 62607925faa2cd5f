/**
 * How a merged line is shown: `service | ` and then pino-pretty's rendering of a JSON line (time,
 * level, message, the other fields indented below), or the text line as the daemon wrote it.
 * The service column is padded to the longest name so the lines align.
 */
import { prettyFactory } from 'pino-pretty';
import type { ParsedLine } from './line.ts';

export interface FormatOptions {
  colorize: boolean;
  /** Width of the service column. */
  width: number;
  /** One line per record (fields inline) instead of pino-pretty's indented block. */
  singleLine?: boolean;
}

const DIM = '\x1b[2m';
const RESET = '\x1b[0m';
/** Stable colours per service name: the same service always gets the same one. */
const COLOURS = ['\x1b[36m', '\x1b[35m', '\x1b[33m', '\x1b[32m', '\x1b[34m', '\x1b[96m', '\x1b[95m', '\x1b[93m', '\x1b[92m', '\x1b[94m'];

function colourOf(service: string): string {
  let h = 0;
  for (const c of service) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return COLOURS[h % COLOURS.length]!;
}

export type LineFormatter = (line: ParsedLine) => string;

export function lineFormatter(opts: FormatOptions): LineFormatter {
  const pretty = prettyFactory({
    colorize: opts.colorize,
    translateTime: 'SYS:HH:MM:ss.l',
    // The service is the column; pid/hostname are the same on every line of a file.
    ignore: 'pid,hostname,service',
    singleLine: opts.singleLine ?? false,
  });
  return (line) => {
    const name = line.service.padEnd(opts.width);
    const prefix = opts.colorize ? `${colourOf(line.service)}${name}${RESET} | ` : `${name} | `;
    if (line.json === undefined) return `${prefix}${opts.colorize ? `${DIM}${line.raw}${RESET}` : line.raw}\n`;
    // pino-pretty renders the fields under the message, one per line: indent them under the column.
    const body = pretty(line.json).replace(/\n$/, '');
    const pad = `${' '.repeat(opts.width)} | `;
    return `${prefix}${body.split('\n').join(`\n${pad}`)}\n`;
  };
}
