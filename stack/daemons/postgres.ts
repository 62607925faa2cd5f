/**
 * The private PostgreSQL of `ceerion start` when no database URL is configured: Debian's server
 * binaries, data in VAR/postgres/data (kept across runs: it is the index, the accounts and the
 * models), listening on 127.0.0.1 only with trust authentication for local connections.
 * initdb and postgres refuse to run as root, so as root they run as the `postgres` OS user.
 */
import { chown, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { LOG_FILE } from '../contracts.ts';
import { postgresCheck } from '../health.ts';
import type { ServiceSpec } from '../supervisor.ts';
import { isRoot, osUser, postgresBinDir, run } from './system.ts';

export interface PrivatePostgres {
  spec: ServiceSpec;
  url: string;
}

/** PG* variables of the caller must not steer the private server's tools. */
function cleanEnv(): NodeJS.ProcessEnv {
  return { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PG'))), LC_ALL: 'C' };
}

export async function privatePostgres(varDir: string, port: number): Promise<PrivatePostgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql), and no DATABASE_URL set');
  const user = isRoot() ? osUser('postgres') : undefined;
  if (isRoot() && !user) throw new Error('running as root, but there is no postgres OS user to run PostgreSQL as');
  const dir = path.join(varDir, 'postgres');
  const data = path.join(dir, 'data');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (user) await chown(dir, user.uid, user.gid);
  if (!existsSync(path.join(data, 'PG_VERSION'))) {
    await run(path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync'], { ...(user ?? {}), env: cleanEnv() });
  }
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    url,
    spec: {
      name: 'postgres',
      kind: 'daemon',
      stage: 0,
      command: path.join(bin, 'postgres'),
      // The socket goes in our dir, not /var/run/postgresql (the system server's).
      args: ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1'],
      env: cleanEnv(),
      cwd: dir,
      ...(user ?? {}),
      logFile: LOG_FILE(varDir, 'postgres'),
      health: postgresCheck(url),
      // Fast shutdown: sessions are ended and the server checkpoints; nothing committed is lost.
      stopSignal: 'SIGINT',
    },
  };
}
