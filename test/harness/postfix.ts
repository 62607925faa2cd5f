// Starts a private, throwaway Postfix (Debian's binaries, everything else in a
// fresh temp dir) so tests and benchmarks can push mail through a real smtpd
// with our milter in smtpd_milters and see what reaches the SMTP sink.
//
// Must run as root: `postfix start` needs it to set up the queue and drop
// privileges to mail_owner. Nothing under /etc/postfix or /var/spool/postfix is
// written; only the shared read-only metadata ($meta_directory) is used.
import { groupMembers, isAlive } from './process-group.ts';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildMainCf, masterCf, type PostfixOptions } from './postfix-config.ts';

export { readMilterSnippet, type PostfixOptions } from './postfix-config.ts';

export interface PostfixInstance {
  smtpPort: number;
  dir: string;
  configDir: string;
  /** Contents of the maillog file. */
  log(): Promise<string>;
  /** Poll the maillog until `pattern` matches (postlogd writes asynchronously). */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Messages still in the queue (incoming, active, deferred, hold, maildrop). */
  queueSize(): Promise<number>;
  /** Ask the queue manager to retry deferred mail now. */
  flush(): Promise<void>;
  /** Stop master and all its children, then delete the temp dir. Idempotent. */
  stop(): Promise<void>;
}

const exec = promisify(execFile);
const QUEUE_MESSAGE_DIRS = ['maildrop', 'incoming', 'active', 'deferred', 'hold'];
const START_ATTEMPTS = 3;

/** Bind port 0 on loopback and release it. Racy by nature; startPostfix retries on EADDRINUSE. */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (addr === null || typeof addr === 'string') throw new Error('freePort: unexpected address');
  return addr.port;
}

async function postfixCmd(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await exec(cmd, args, { timeout: 30_000 });
    return stdout + stderr;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

/**
 * Postfix refuses to trust a "hot" main.cf: if its mtime is within the last
 * second or so it re-reads it every 300ms until it cools down (dict_load_fp),
 * which made every fresh `postfix start` take ~2s. Backdating the mtime of our
 * freshly generated files skips that wait.
 */
async function writeConfigFile(file: string, text: string): Promise<void> {
  await writeFile(file, text);
  const past = new Date(Date.now() - 60_000);
  await utimes(file, past, past);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitUntil(cond: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(stepMs);
  }
}

/** Resolve once smtpd answers with a 220 greeting (proves master bound the port and smtpd starts). */
async function waitForGreeting(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no attempt';
  while (Date.now() < deadline) {
    try {
      const line = await new Promise<string>((resolve, reject) => {
        const s = net.connect({ port, host: '127.0.0.1' });
        let buf = '';
        s.setTimeout(2000, () => s.destroy(new Error('timeout waiting for greeting')));
        s.on('data', (d: Buffer) => {
          buf += d.toString('latin1');
          const nl = buf.indexOf('\n');
          if (nl < 0) return;
          s.end('QUIT\r\n');
          resolve(buf.slice(0, nl).trim());
        });
        s.on('error', reject);
        s.on('close', () => reject(new Error(`closed before greeting (got ${JSON.stringify(buf)})`)));
      });
      if (line.startsWith('220')) return;
      lastError = `unexpected greeting ${line}`;
    } catch (err) {
      lastError = (err as Error).message;
    }
    await sleep(50);
  }
  throw new Error(`smtpd on 127.0.0.1:${port} not ready after ${timeoutMs}ms: ${lastError}`);
}

// Safety net if a test process dies without calling stop(): don't leave masters behind.
const live = new Map<string, () => void>();
process.once('exit', () => {
  for (const kill of live.values()) kill();
});

export async function startPostfix(opts: PostfixOptions): Promise<PostfixInstance> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-pf-'));
  // mkdtemp gives 0700; Postfix daemons run as mail_owner and must reach the queue.
  await chmod(dir, 0o755);
  const configDir = path.join(dir, 'etc');
  const queueDir = path.join(dir, 'spool');
  const maillog = path.join(dir, 'maillog');
  await mkdir(configDir, { mode: 0o755 });
  // The postfix command chdir()s here before post-install can create it;
  // the subdirectories and data_directory are left to post-install.
  await mkdir(queueDir, { mode: 0o755 });
  const cf = await buildMainCf(dir, opts);
  await writeConfigFile(path.join(configDir, 'main.cf'), cf.render());

  const readMasterPid = async (): Promise<number | undefined> => {
    try {
      const pid = Number((await readFile(path.join(queueDir, 'pid', 'master.pid'), 'utf8')).trim());
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  };
  const readLog = (): Promise<string> => readFile(maillog, 'utf8').catch(() => '');

  let smtpPort = 0;
  let masterPid: number | undefined;
  try {
    for (let attempt = 1; ; attempt++) {
      smtpPort = await freePort();
      await writeConfigFile(path.join(configDir, 'master.cf'), masterCf(smtpPort));
      try {
        // `postfix start` runs `master -w`, which returns only after master has
        // bound its listeners, so a lost port race is reported right here.
        await postfixCmd('postfix', ['-c', configDir, 'start']);
        break;
      } catch (err) {
        const why = `${(err as Error).message}\n${await readLog()}`;
        if (attempt < START_ATTEMPTS && /address already in use/i.test(why)) continue;
        throw new Error(`startPostfix failed (dir ${dir}):\n${why}`);
      }
    }
    masterPid = await readMasterPid();
    if (masterPid === undefined) throw new Error(`startPostfix: no master.pid in ${queueDir}`);
    const pid = masterPid;
    live.set(dir, () => {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
      rmSync(dir, { recursive: true, force: true });
    });
    await waitForGreeting(smtpPort, 10_000);
  } catch (err) {
    await shutdown(configDir, masterPid ?? (await readMasterPid()));
    live.delete(dir);
    await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    throw err;
  }

  let stopping: Promise<void> | undefined;
  return {
    smtpPort,
    dir,
    configDir,
    log: readLog,
    async waitForLog(pattern, timeoutMs = 10_000) {
      let text = '';
      const ok = await waitUntil(async () => pattern.test((text = await readLog())), timeoutMs, 100);
      if (!ok) throw new Error(`maillog did not match ${pattern} within ${timeoutMs}ms:\n${text}`);
      return text;
    },
    async queueSize() {
      let n = 0;
      const walk = async (d: string): Promise<void> => {
        const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
        for (const e of entries) {
          if (e.isDirectory()) await walk(path.join(d, e.name)); // hashed subdirs
          else if (e.isFile()) n++;
        }
      };
      for (const q of QUEUE_MESSAGE_DIRS) await walk(path.join(queueDir, q));
      return n;
    },
    async flush() {
      await postfixCmd('postqueue', ['-c', configDir, '-f']);
    },
    stop() {
      stopping ??= (async () => {
        await shutdown(configDir, masterPid);
        live.delete(dir);
        await rm(dir, { recursive: true, force: true, maxRetries: 5 });
      })();
      return stopping;
    },
  };
}

/** `postfix stop`, then make sure master and every child in its process group are gone. */
async function shutdown(configDir: string, masterPid: number | undefined): Promise<void> {
  await postfixCmd('postfix', ['-c', configDir, 'stop']).catch(() => undefined);
  if (masterPid === undefined) return;
  if (!(await waitUntil(() => !isAlive(masterPid), 10_000))) {
    try {
      process.kill(-masterPid, 'SIGKILL');
    } catch {
      // raced with exit
    }
  }
  // master SIGTERMs its children on exit but does not wait for them; they
  // (postlogd included) could still be writing into the dir we are about to rm.
  if (!(await waitUntil(async () => (await groupMembers(masterPid)).length === 0, 5_000))) {
    try {
      process.kill(-masterPid, 'SIGKILL');
    } catch {
      // raced with exit
    }
    await waitUntil(async () => (await groupMembers(masterPid)).length === 0, 2_000);
  }
}
