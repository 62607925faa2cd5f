// Starts a private, throwaway clamd (Debian's clamav-daemon binary, everything else in a fresh
// temp dir): its own config, a unix socket and a loopback TCP port, and a one-signature database
// from test/fixtures/clamav (the real ClamAV databases cannot be downloaded here). With one
// signature clamd is ready in tens of milliseconds.
//
// The package is installed when missing (as root); the system clamd and freshclam it may start
// are stopped and disabled, so nothing but our instances runs.
import { isAlive } from './process-group.ts';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ping } from '../../milter/clamd/client.ts';
import { SIGNATURE_DB } from '../fixtures/clamav/eicar.ts';
import { freePort } from './postfix.ts';

export const CLAMD = '/usr/sbin/clamd';

export interface ClamdInstance {
  /** `unix:/tmp/.../clamd.sock` (Postfix notation, as the antivirus config takes it). */
  unixSocket: string;
  /** `inet:127.0.0.1:PORT`. */
  tcp: string;
  dir: string;
  pid: number;
  /** Milliseconds from spawn until PING answered. */
  readyMs: number;
  /** clamd's log (its LogFile and anything it printed). */
  log(): Promise<string>;
  /** SIGTERM, wait for exit (SIGKILL after 5 s), remove the temp dir. Idempotent. */
  stop(): Promise<void>;
}

export interface ClamdOptions {
  /** clamd's StreamMaxLength: INSTREAM data beyond it is refused with an ERROR. */
  streamMaxLength?: string;
}

const exec = promisify(execFile);
const START_ATTEMPTS = 3;
const READY_TIMEOUT_MS = 30_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let installed: Promise<void> | undefined;

/** Install clamav-daemon if its clamd is missing; stop and disable the services the package starts. */
export function ensureClamd(): Promise<void> {
  installed ??= (async () => {
    if (existsSync(CLAMD)) {
      if (await systemServicesRunning()) await stopSystemServices();
      return;
    }
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const install = () => exec('apt-get', ['install', '-y', '-qq', 'clamav-daemon'], { env, timeout: 300_000 });
    try {
      await install();
    } catch {
      await exec('apt-get', ['update', '-qq'], { env, timeout: 300_000 });
      await install();
    }
    if (!existsSync(CLAMD)) throw new Error(`apt-get install clamav-daemon did not provide ${CLAMD}`);
    await stopSystemServices();
  })();
  return installed;
}

const SYSTEM_PIDFILES = ['/run/clamav/clamd.pid', '/run/clamav/freshclam.pid'];

/** A system clamd or freshclam running (pidfile of a live process), or enabled under systemd. */
async function systemServicesRunning(): Promise<boolean> {
  for (const file of SYSTEM_PIDFILES) {
    const pid = Number(await readFile(file, 'utf8').catch(() => ''));
    if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) return true;
  }
  if (!existsSync('/run/systemd/system')) return false;
  const enabled = await exec('systemctl', ['is-enabled', '--quiet', 'clamav-freshclam.service', 'clamav-daemon.service']).then(
    () => true,
    () => false,
  );
  return enabled;
}

/** The package's own clamd and freshclam (freshclam would try to download databases) must not run. */
async function stopSystemServices(): Promise<void> {
  const units = ['clamav-daemon.socket', 'clamav-daemon.service', 'clamav-freshclam.service'];
  if (existsSync('/run/systemd/system')) {
    await exec('systemctl', ['disable', '--now', ...units]).catch(() => undefined);
    return;
  }
  for (const service of ['clamav-daemon', 'clamav-freshclam']) {
    await exec('service', [service, 'stop']).catch(() => undefined);
    await exec('update-rc.d', [service, 'disable']).catch(() => undefined);
  }
}

function config(dir: string, port: number, opts: ClamdOptions): string {
  return [
    `LocalSocket ${path.join(dir, 'clamd.sock')}`,
    'LocalSocketMode 600',
    'FixStaleSocket yes',
    'TCPAddr 127.0.0.1',
    `TCPSocket ${port}`,
    `DatabaseDirectory ${path.join(dir, 'db')}`,
    `TemporaryDirectory ${path.join(dir, 'tmp')}`,
    `PidFile ${path.join(dir, 'clamd.pid')}`,
    `LogFile ${path.join(dir, 'clamd.log')}`,
    'LogSyslog no',
    'LogTime yes',
    'Foreground yes',
    // The signature database is ours and fixed: no bytecode, no self-check reloads.
    'Bytecode no',
    'SelfCheck 0',
    'ScanMail yes',
    'MaxThreads 4',
    `StreamMaxLength ${opts.streamMaxLength ?? '16M'}`,
    '',
  ].join('\n');
}

// Safety net if a test process dies without calling stop(): don't leave clamds behind.
const live = new Map<number, ChildProcess>();
process.once('exit', () => {
  for (const child of live.values()) child.kill('SIGKILL');
});

const exited = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));

export async function startClamd(opts: ClamdOptions = {}): Promise<ClamdInstance> {
  await ensureClamd();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-clamd-'));
  await mkdir(path.join(dir, 'db'));
  await mkdir(path.join(dir, 'tmp'));
  await copyFile(SIGNATURE_DB, path.join(dir, 'db', path.basename(SIGNATURE_DB)));
  const logFile = path.join(dir, 'clamd.log');
  const outFile = path.join(dir, 'clamd.out');
  const log = async () => `${await readFile(logFile, 'utf8').catch(() => '')}${await readFile(outFile, 'utf8').catch(() => '')}`;
  const unixSocket = `unix:${path.join(dir, 'clamd.sock')}`;

  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const configFile = path.join(dir, 'clamd.conf');
    await writeFile(configFile, config(dir, port, opts));
    const out = await open(outFile, 'a');
    const started = performance.now();
    const child = spawn(CLAMD, ['--foreground', `--config-file=${configFile}`], { stdio: ['ignore', out.fd, out.fd] });
    await out.close();
    const pid = child.pid;
    if (pid === undefined) throw new Error(`could not start ${CLAMD}: ${await log()}`);
    live.set(pid, child);
    let spawnError: Error | undefined;
    child.once('error', (err) => (spawnError = err));
    const tcp = `inet:127.0.0.1:${port}`;
    const stopChild = async () => {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited(child);
      clearTimeout(killer);
      live.delete(pid);
    };
    const ready = await waitReady(child, [unixSocket, tcp]);
    if (!ready) {
      await stopChild();
      const text = await log();
      if (attempt < START_ATTEMPTS && /bind|address already in use/i.test(text)) continue;
      await rm(dir, { recursive: true, force: true });
      throw new Error(`private clamd did not answer PING within ${READY_TIMEOUT_MS} ms (${spawnError?.message ?? `exit ${child.exitCode}`}):\n${text}`);
    }
    const readyMs = Math.round(performance.now() - started);
    let stopping: Promise<void> | undefined;
    return {
      unixSocket,
      tcp,
      dir,
      pid,
      readyMs,
      log,
      stop() {
        stopping ??= (async () => {
          await stopChild();
          await rm(dir, { recursive: true, force: true, maxRetries: 5 });
        })();
        return stopping;
      },
    };
  }
}

/** Poll PING on every address until all answer, clamd exits, or the deadline passes. */
async function waitReady(child: ChildProcess, addresses: string[]): Promise<boolean> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    const answers = await Promise.allSettled(addresses.map((a) => ping(a, { timeoutMs: 1000 })));
    if (answers.every((a) => a.status === 'fulfilled')) return true;
    await sleep(20);
  }
  return false;
}

/** The clamd version the harness runs, e.g. "ClamAV 1.4.6". */
export async function clamdVersion(): Promise<string> {
  await ensureClamd();
  const { stdout } = await exec(CLAMD, ['--version']);
  return stdout.trim();
}

export { isAlive };
