// PostgreSQL for tests, two ways:
// - `testSchema(t)`: a fresh schema (random name) in the shared server at 127.0.0.1:5432 (or
//   TEST_DATABASE_URL), dropped with everything in it when the test ends. Most tests need no more.
// - `startPostgres()`: a private server (Debian's initdb + pg_ctl, a data dir in a temp dir, a free
//   loopback port, its unix socket in the temp dir) for tests that stop and restart the database.
//   initdb refuses to run as root, so as root every command runs as the `postgres` OS user and
//   the temp dir is handed to that user. fsync is off: the data is thrown away anyway.
import { execFile, spawnSync, type ExecFileOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import pg from 'pg';
import type { DatabaseConfig } from '../../core/config/policyd.ts';
import { freePort } from './postfix.ts';

export const SHARED_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A schema of its own in the shared server for this test; dropped (CASCADE) after it. */
export function testSchema(t: TestContext, url = SHARED_DATABASE_URL): DatabaseConfig {
  const schema = `test_${randomBytes(6).toString('hex')}`;
  t.after(() => dropSchema(url, schema));
  return { url, schema };
}

export async function dropSchema(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

export interface PrivatePostgres {
  /** postgres://postgres@127.0.0.1:PORT/postgres (trust authentication). */
  url: string;
  port: number;
  dir: string;
  /** Fast shutdown: open sessions are terminated, as when an admin stops the server. */
  stop(): Promise<void>;
  /** Start again on the same port and data. */
  start(): Promise<void>;
  /** Stop if running and delete the data. */
  close(): Promise<void>;
  /** The server's log so far. */
  log(): string;
}

/** The newest installed major version's bin directory. */
function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(path.join(root, v, 'bin', 'pg_ctl'))) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (!versions[0]) throw new Error(`no PostgreSQL server binaries under ${root} (apt-get install postgresql)`);
  return path.join(root, versions[0], 'bin');
}

/** uid/gid of the postgres OS user when we are root (initdb and postgres refuse to run as root). */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  const [, , uid, gid] = line?.split(':') ?? [];
  if (uid === undefined || gid === undefined) throw new Error('running as root, but there is no postgres user to run PostgreSQL as');
  return { uid: Number(uid), gid: Number(gid) };
}

/** PG* variables of the caller (PGDATA, PGPORT…) must not steer the private server's tools. */
function cleanEnv(): NodeJS.ProcessEnv {
  return { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PG'))), LC_ALL: 'C' };
}

function run(bin: string, args: string[], user: { uid: number; gid: number } | undefined): Promise<string> {
  const options: ExecFileOptions = { env: cleanEnv(), timeout: 60_000, cwd: '/', ...(user ?? {}) };
  return new Promise((resolve, reject) => {
    execFile(bin, args, { ...options, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(bin)} ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`));
      else resolve(`${stdout}${stderr}`);
    });
  });
}

const live = new Map<string, () => void>();
process.once('exit', () => {
  for (const kill of live.values()) kill();
});

const START_ATTEMPTS = 3;

export async function startPostgres(): Promise<PrivatePostgres> {
  const bin = binDir();
  const user = runAs();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  const pgCtl = path.join(bin, 'pg_ctl');
  // A test process that dies without close() must not leave a server running.
  live.set(dir, () => {
    spawnSync(pgCtl, ['-D', data, '-m', 'immediate', 'stop'], { env: cleanEnv(), cwd: '/', ...(user ?? {}), stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  });
  let running = false;
  let port = 0;
  const launch = async (): Promise<void> => {
    const settings = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off`;
    await run(pgCtl, ['-D', data, '-l', logFile, '-w', '-t', '60', '-o', settings, 'start'], user);
    running = true;
  };
  const readLog = (): string => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  try {
    await run(path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync'], user);
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        await launch();
        break;
      } catch (err) {
        // Another process took the port between freePort() and the bind: try another one.
        if (attempt < START_ATTEMPTS && /already in use/i.test(readLog())) continue;
        throw new Error(`${(err as Error).message}\n${readLog()}`);
      }
    }
  } catch (err) {
    live.get(dir)?.();
    live.delete(dir);
    throw err;
  }
  const stop = async (): Promise<void> => {
    if (!running) return;
    await run(pgCtl, ['-D', data, '-m', 'fast', '-w', 'stop'], user);
    running = false;
  };
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dir,
    stop,
    start: async () => {
      if (!running) await launch();
    },
    close: async () => {
      await stop().catch(() => {});
      live.get(dir)?.();
      live.delete(dir);
    },
    log: readLog,
  };
}
