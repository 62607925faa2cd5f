/** What the stack needs to know about the machine: users, binaries, whether we are root. */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const isRoot = (): boolean => process.getuid?.() === 0;

/** uid/gid of an OS user, or undefined when there is none. */
export function osUser(name: string): { uid: number; gid: number } | undefined {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  const f = line?.split(':');
  return f ? { uid: Number(f[2]), gid: Number(f[3]) } : undefined;
}

/** The first of `candidates` that exists. */
export function findBinary(...candidates: string[]): string | undefined {
  return candidates.find((c) => existsSync(c));
}

/** The newest installed PostgreSQL server's bin directory (Debian: /usr/lib/postgresql/N/bin). */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).filter((v) => existsSync(path.join(root, v, 'bin', 'postgres')));
  versions.sort((a, b) => Number(b) - Number(a));
  return versions[0] ? path.join(root, versions[0], 'bin') : undefined;
}

/** Runs a program to completion; rejects with its output on failure. */
export function run(command: string, args: string[], opts: { uid?: number; gid?: number; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { cwd: '/', timeout: opts.timeoutMs ?? 60_000, encoding: 'utf8', ...(opts.env ? { env: opts.env } : {}), ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid } : {}) },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${path.basename(command)} ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`));
        else resolve(`${stdout}${stderr}`);
      },
    );
  });
}
