/**
 * `ceerion logs` (pnpm mail:logs): the stack's logs (var/log/*.log) merged in time order and
 * pretty-printed: our services' pino JSON through pino-pretty, the daemons' text lines as written,
 * each prefixed by its service.
 *
 *   --service milter,policyd   only these files (names as in var/log: milter, policyd, lmtp,
 *                              learner, supervisor, postfix, dovecot, postgres, redis, clamd)
 *   --level warn               pino levels (trace debug info warn error fatal). Text lines are
 *                              judged by their own severity word (`warning:`, `Error:`, `FATAL:`,
 *                              Redis's `#`); a text line without one counts as info.
 *   --queue-id 4XyZ1Q          lines about one Postfix queue id: our JSON lines whose qid
 *                              (milter), queueId (policyd) or queue_id field is it, and any line
 *                              (JSON or text) containing it as a word (Postfix's own lines, the
 *                              milter's trace header text)
 *   -n, --lines N              last N lines per file first (default 10)
 *   --no-follow                print and exit
 *   --multi-line               pino-pretty's indented fields (default: one line per record)
 */
import type { Command } from 'commander';
import { LOG_DIR } from '../stack/contracts.ts';
import { followLogs } from '../stack/logs/follow.ts';
import { lineFormatter } from '../stack/logs/format.ts';
import { LEVELS, matches, parseLevel, type LogFilter } from '../stack/logs/line.ts';
import { stackVarDir } from './smoke.ts';

interface LogsOptions {
  varDir?: string;
  service?: string;
  level?: string;
  queueId?: string;
  lines: string;
  follow: boolean;
  color?: boolean;
  multiLine?: boolean;
}

class UsageError extends Error {}

/** Options → filter; usage errors name the option and the value. Pure. */
export function buildFilter(opts: Pick<LogsOptions, 'service' | 'level' | 'queueId'>): LogFilter {
  const filter: LogFilter = {};
  if (opts.service !== undefined) {
    const names = opts.service.split(',').map((s) => s.trim()).filter(Boolean);
    if (names.length === 0) throw new UsageError('--service: give one or more service names, comma-separated');
    filter.services = new Set(names);
  }
  if (opts.level !== undefined) {
    const level = parseLevel(opts.level);
    if (level === undefined) throw new UsageError(`--level: ${JSON.stringify(opts.level)} is not one of ${Object.keys(LEVELS).join(', ')}`);
    filter.minLevel = level;
  }
  if (opts.queueId !== undefined) {
    if (!/^[A-Za-z0-9]{5,32}$/.test(opts.queueId)) throw new UsageError(`--queue-id: ${JSON.stringify(opts.queueId)} is not a Postfix queue id (letters and digits)`);
    filter.queueId = opts.queueId;
  }
  return filter;
}

async function logs(opts: LogsOptions): Promise<void> {
  const filter = buildFilter(opts);
  if (!/^\d{1,7}$/.test(opts.lines)) throw new UsageError(`--lines: ${JSON.stringify(opts.lines)} is not a whole number`);
  const dir = LOG_DIR(stackVarDir(opts.varDir));
  const colorize = opts.color ?? process.stdout.isTTY === true;
  const width = Math.max('supervisor'.length, ...[...(filter.services ?? [])].map((s) => s.length));
  const format = lineFormatter({ colorize, width, singleLine: !opts.multiLine });
  const abort = new AbortController();
  const stop = (): void => abort.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // `ceerion logs | head`: a closed pipe ends the command quietly.
  process.stdout.on('error', stop);
  try {
    await followLogs({
      dir,
      ...(filter.services ? { services: filter.services } : {}),
      lines: Number(opts.lines),
      follow: opts.follow,
      signal: abort.signal,
      onLines: (lines) => {
        const text = lines.filter((l) => matches(l, filter)).map(format).join('');
        if (text && !abort.signal.aborted) process.stdout.write(text);
      },
    });
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

export function registerLogsCommand(program: Command): void {
  program
    .command('logs')
    .description("follow the stack's logs (var/log/*.log) merged in time order, pretty-printed (pnpm mail:logs)")
    .option('--var-dir <dir>', "the stack's var dir (default: $CEERION_STACK_VAR_DIR or ./var)")
    .option('-s, --service <names>', 'only these services, comma-separated (e.g. milter,policyd,postfix)')
    .option('-l, --level <level>', 'lowest level shown: trace, debug, info, warn, error, fatal (text lines: by their severity word, else info)')
    .option('-q, --queue-id <id>', 'only lines about this Postfix queue id')
    .option('-n, --lines <n>', 'lines per file shown first', '10')
    .option('--no-follow', 'print and exit instead of following')
    .option('--color', 'colours even when stdout is not a terminal')
    .option('--no-color', 'no colours (default: colours on a terminal)')
    .option('--multi-line', "each JSON record's fields on lines of their own (default: one line per record)")
    .action(async (opts: LogsOptions) => {
      try {
        await logs(opts);
      } catch (err) {
        process.stderr.write(`ceerion logs: ${(err as Error).message}\n`);
        process.exitCode = err instanceof UsageError ? 2 : 1;
      }
    });
}
