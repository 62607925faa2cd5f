/**
 * `ceerion smoke` (pnpm mail:test): the smoke test of a running stack. Reads what `ceerion start`
 * published under the var dir (run/stack.json, run/credentials.json), runs every check, prints a
 * pass/fail table, and exits 1 if any check failed (2: the stack could not be tested at all).
 */
import path from 'node:path';
import type { Command } from 'commander';
import { loadStack, newRunId, notTestable, pidAlive, SmokeSetupError, type SmokeContext } from '../stack/smoke/context.ts';
import { renderResults } from '../stack/smoke/render.ts';
import { runChecks, selectChecks } from '../stack/smoke/runner.ts';

interface SmokeOptions {
  varDir?: string;
  only?: string;
  timeout: string;
  json?: boolean;
}

/** --var-dir, else CEERION_STACK_VAR_DIR (stack.varDir), else ./var: where `ceerion start` writes. */
export function stackVarDir(opt: string | undefined): string {
  return path.resolve(opt ?? process.env.CEERION_STACK_VAR_DIR ?? 'var');
}

async function smoke(opts: SmokeOptions): Promise<number> {
  const varDir = stackVarDir(opts.varDir);
  const checks = selectChecks(opts.only);
  const stepSeconds = Number(opts.timeout);
  if (!Number.isFinite(stepSeconds) || stepSeconds <= 0) throw new SmokeSetupError(`--timeout: ${JSON.stringify(opts.timeout)} is not a positive number of seconds`);
  const { state, creds } = await loadStack(varDir);
  const why = notTestable(state, pidAlive);
  if (why) throw new SmokeSetupError(why);
  const ctx: SmokeContext = { state, creds, runId: newRunId(), stepTimeoutMs: stepSeconds * 1000, usedAddresses: new Set() };
  if (!opts.json) process.stderr.write(`smoke test of the stack in ${varDir} (run ${ctx.runId}, ${checks.length} checks)…\n`);
  const started = performance.now();
  const results = await runChecks(ctx, {
    checks,
    checkTimeoutMs: Math.max(120_000, stepSeconds * 4000),
    ...(opts.json ? {} : { onResult: (r) => process.stderr.write(`  ${r.ok ? 'pass' : 'FAIL'} ${r.title}\n`) }),
  });
  const totalMs = performance.now() - started;
  if (opts.json) process.stdout.write(`${JSON.stringify({ runId: ctx.runId, ok: results.every((r) => r.ok), totalMs: Math.round(totalMs), results }, null, 2)}\n`);
  else process.stdout.write(`\n${renderResults(results, totalMs)}`);
  return results.every((r) => r.ok) ? 0 : 1;
}

export function registerSmokeCommand(program: Command): void {
  program
    .command('smoke')
    .description('smoke-test a running stack (pnpm mail:start): submission, inbound, spam, EICAR, rate limit, IMAP, search, events')
    .option('--var-dir <dir>', 'the stack\'s var dir (default: $CEERION_STACK_VAR_DIR or ./var)')
    .option('--only <ids>', 'run only these checks (comma-separated: submit,receive,spam,eicar,rate,imap,search,events)')
    .option('--timeout <seconds>', 'how long one step (a reply, a delivery, an event) may take', '30')
    .option('--json', 'machine-readable results on stdout')
    .action(async (opts: SmokeOptions) => {
      try {
        process.exitCode = await smoke(opts);
      } catch (err) {
        process.stderr.write(`ceerion smoke: ${(err as Error).message}\n`);
        process.exitCode = 2;
      }
      // A check that overran its deadline may still hold a socket until its own timeout: the
      // answer is printed, so do not wait for it.
      setTimeout(() => process.exit(), 2000).unref();
    });
}
