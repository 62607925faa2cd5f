/**
 * The stack commands (package.json scripts in brackets):
 *   ceerion start [--docker|--native]   run the whole suite, supervised       (pnpm mail:start)
 *   ceerion stop                        stop a stack started from this dir  (pnpm mail:stop)
 *   ceerion status                      services, pids, restarts, health    (pnpm mail:status)
 */
import path from 'node:path';
import type { Command } from 'commander';
import { table } from '../core/text-table.ts';
import { postfixSnippet } from '../milter/postfix-snippet.ts';
import { policySnippet } from '../policyd/postfix-snippet.ts';
import { lmtpSnippet } from '../lmtp-indexer/postfix-snippet.ts';
import { isAlive, readState } from '../stack/state-file.ts';
import { startStack } from '../stack/run.ts';
import { dockerAnswers, startDocker } from '../stack/docker.ts';
import { loadOrExit, withServiceOptions, type ServiceOptions } from './runtime.ts';

interface StartOptions extends ServiceOptions {
  docker?: boolean;
  native?: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function start(opts: StartOptions): Promise<void> {
  const config = loadOrExit(opts);
  if (opts.docker || (!opts.native && dockerAnswers())) {
    process.exitCode = await startDocker((l) => process.stderr.write(`${l}\n`));
    return;
  }
  let stack: Awaited<ReturnType<typeof startStack>>;
  try {
    stack = await startStack(config, { ...(opts.config ? { configFile: opts.config } : {}), env: process.env, say: (l) => process.stderr.write(`${l}\n`) });
  } catch (err) {
    process.stderr.write(`ceerion start: ${(err as Error).message}\n`);
    process.exit(1);
  }
  const e = stack.state().endpoints;
  if (!e.smtp) {
    process.stderr.write(
      `To use your own Postfix, add these lines to /etc/postfix/main.cf and run \`postfix reload\` (or run \`pnpm mail:setup\`):\n\n${postfixSnippet(e.milter)}\n${policySnippet(e.policyd)}\n${lmtpSnippet(e.lmtp)}\n`,
    );
  }
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`\n${signal}: stopping every service (in-flight messages finish first)…\n`);
    stack.stop().then(
      () => process.exit(0),
      (err: Error) => {
        process.stderr.write(`stop failed: ${err.message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

function varDirOf(opts: ServiceOptions): string {
  return path.resolve(loadOrExit(opts).stack.varDir);
}

async function stop(opts: ServiceOptions): Promise<void> {
  const varDir = varDirOf(opts);
  const state = readState(varDir);
  if (!state) {
    process.stderr.write(`no stack state in ${varDir}/run (nothing was started from here)\n`);
    return;
  }
  if (isAlive(state.supervisorPid)) {
    process.kill(state.supervisorPid, 'SIGTERM');
    process.stderr.write(`stopping the stack (supervisor pid ${state.supervisorPid})…\n`);
    const deadline = Date.now() + 120_000;
    while (isAlive(state.supervisorPid) && Date.now() < deadline) await sleep(100);
    if (isAlive(state.supervisorPid)) {
      process.stderr.write('the supervisor did not exit within 120 s\n');
      process.exitCode = 1;
      return;
    }
  }
  // A supervisor killed hard leaves its services running: end their process groups.
  const orphans = state.services.filter((s) => isAlive(s.pid));
  for (const s of orphans) {
    try {
      process.kill(-s.pid!, 'SIGTERM');
    } catch {
      // gone meanwhile
    }
  }
  const deadline = Date.now() + 15_000;
  while (orphans.some((s) => isAlive(s.pid)) && Date.now() < deadline) await sleep(100);
  for (const s of orphans.filter((o) => isAlive(o.pid))) {
    try {
      process.kill(-s.pid!, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  process.stderr.write(`stopped${orphans.length ? ` (ended ${orphans.length} orphaned services: ${orphans.map((o) => o.name).join(', ')})` : ''}\n`);
}

function status(opts: ServiceOptions): void {
  const varDir = varDirOf(opts);
  const state = readState(varDir);
  if (!state || !isAlive(state.supervisorPid)) {
    process.stdout.write(`not running (${varDir})\n`);
    process.exitCode = 3;
    return;
  }
  const rows = state.services.map((s) => [s.name, s.state, s.pid !== undefined && isAlive(s.pid) ? String(s.pid) : '-', String(s.restarts), s.health]);
  process.stdout.write(
    `stack ${state.ready ? 'ready' : 'starting'}${state.stopping ? ' (stopping)' : ''}, supervisor pid ${state.supervisorPid}, since ${state.startedAt}\n` +
      table(['service', 'state', 'pid', 'restarts', 'health check'], rows) +
      '\n',
  );
  if (!state.ready || state.services.some((s) => s.state !== 'healthy')) process.exitCode = 1;
}

export function registerStackCommands(program: Command): void {
  withServiceOptions(program.command('start').description('run the whole suite under a supervisor: private PostgreSQL/Redis, clamd, Dovecot and Postfix when available (pnpm mail:start)'))
    .option('--docker', 'run docker compose -f docker-compose.mail.yml up instead (default when a Docker engine answers)')
    .option('--native', 'run natively even when a Docker engine answers')
    .action(start);
  program.command('stop').description('stop the stack started from this directory (pnpm mail:stop)').option('-c, --config <file>', 'YAML configuration file').action(stop);
  program.command('status').description('the stack’s services, pids, restarts and health (pnpm mail:status)').option('-c, --config <file>', 'YAML configuration file').action(status);
}

