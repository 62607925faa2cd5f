/** Run `ceerion policyd` as its own process, as an admin would, for end-to-end tests and benchmarks. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { canConnect, ROOT } from './milter-process.ts';
import { freePort } from './postfix.ts';

export interface PolicydProcess {
  /** Postfix notation, e.g. inet:127.0.0.1:PORT. */
  address: string;
  /** The auth-policy HTTP port, when enabled. */
  authPolicyPort?: number;
  pid: number;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface PolicydProcessOptions {
  env?: NodeJS.ProcessEnv;
  logLevel?: string;
  authPolicy?: boolean;
  nodeArgs?: string[];
  /** Postfix notation; a free loopback port by default. */
  listen?: string;
  /** 0 (default) turns /metrics off. */
  metricsPort?: number;
}

export async function startPolicydProcess(opts: PolicydProcessOptions = {}): Promise<PolicydProcess> {
  const address = opts.listen ?? `inet:127.0.0.1:${await freePort()}`;
  const authPolicyPort = opts.authPolicy ? await freePort() : undefined;
  const args = ['--max-semi-space-size=2', ...(opts.nodeArgs ?? []), path.join(ROOT, 'bin/ceerion.mjs'), 'policyd', '--listen', address, '--metrics-port', String(opts.metricsPort ?? 0), '--log-level', opts.logLevel ?? 'warn'];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CEERION_AUTH_POLICY_ENABLED: opts.authPolicy ? 'true' : 'false',
    ...(authPolicyPort ? { CEERION_AUTH_POLICY_PORT: String(authPolicyPort) } : {}),
    ...opts.env,
  };
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`ceerion policyd exited with ${child.exitCode}: ${out}`);
    if (await canConnect(address)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`ceerion policyd did not start listening on ${address}: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    address,
    ...(authPolicyPort ? { authPolicyPort } : {}),
    pid: child.pid!,
    output: () => out,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
