/** Run `ceerion milter` as its own process, as an admin would, for end-to-end tests and benchmarks. */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface MilterProcess {
  child: ChildProcess;
  /** Everything the process wrote to stdout (JSON log lines). */
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startMilterProcess(
  listen: string,
  opts: { env?: NodeJS.ProcessEnv; logLevel?: string; args?: string[]; nodeArgs?: string[] } = {},
): Promise<MilterProcess> {
  // As the shipped launchers start it (package.json, Docker): a 2 MB young generation keeps RSS bounded.
  const args = ['--max-semi-space-size=2', ...(opts.nodeArgs ?? []), path.join(ROOT, 'bin/ceerion.mjs'), 'milter', '--listen', listen, '--metrics-port', '0'];
  args.push('--log-level', opts.logLevel ?? 'warn', ...(opts.args ?? []));
  // The trace-only setup unless a caller turns the others on: authentication would do real DNS
  // lookups, signing would read whatever keys this machine has, and the classifier would use the
  // machine's PostgreSQL (default schema).
  const env = {
    ...process.env,
    CEERION_MILTER_CHECKS_AUTH_ENABLED: 'false',
    CEERION_MILTER_CHECKS_DKIM_SIGN_ENABLED: 'false',
    CEERION_CLASSIFIER_ENABLED: 'false',
    ...opts.env,
  };
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`ceerion milter exited with ${child.exitCode}: ${out}`);
    if (await canConnect(listen)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`ceerion milter did not start listening on ${listen}: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    output: () => out,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export function canConnect(listen: string): Promise<boolean> {
  return new Promise((resolve) => {
    const m = /^inet:(.+):(\d+)$/.exec(listen);
    const s = m ? net.connect(Number(m[2]), m[1]!) : net.connect(listen.replace(/^(unix|local):/, ''));
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
