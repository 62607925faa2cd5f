// Starts a private, throwaway Dovecot 2.3 (Debian's dovecot-core + dovecot-imapd binaries,
// everything else in a fresh temp dir): its own config, base_dir, state_dir, log file and mail
// store, an IMAP listener on a free loopback port, no TLS, users in a passwd-file with {PLAIN}
// passwords. Optionally (dovecot-config.ts renders them) the shipped snippets: policyd's
// auth-policy.conf, and the LMTP indexer's SQL accounts, LMTP listener, quota and push
// notifications. Also a minimal IMAP LOGIN client for tests.
//
// Must run as root: the master binds, then drops to default_internal_user / default_login_user
// (dovecot, dovenull) and the mail user (nobody) as Debian's package sets them up.
//
// Dovecot behaviour this hides, so tests see only what they ask for:
// - Dovecot's own per-IP auth penalty (anvil: 2, 4, 8, 15 s before each attempt after failures)
//   is off unless `authPenalty` is set; it would mix with, and blur, a policy server's tarpit.
//   It is switched off the documented way, by disabling the anvil-auth-penalty listener, and not
//   with login_trusted_networks: trusted clients also skip the policy tarpit.
// - auth_failure_delay defaults to 0 here (2 s in Dovecot). Failures are still flushed by a timer,
//   so a wrong password takes up to ~0.5 s to be answered.
import { groupMembers } from './process-group.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { buildConfig, LEARN_SOCKET_DIR, uidOf, writeLmtpSnippet, writeSnippets, type DovecotOptions } from './dovecot-config.ts';
import { freePort } from './postfix.ts';

export { AUTH_POLICY_SNIPPET, renderAuthPolicySnippet, type DovecotOptions, type DovecotUser } from './dovecot-config.ts';

export interface DovecotInstance {
  imapPort: number;
  /** With `lmtp`: Dovecot's LMTP on 127.0.0.1:lmtpPort and on the unix socket lmtpSocket. */
  lmtpPort?: number;
  lmtpSocket?: string;
  /** Where a learn gateway must listen for this Dovecot's vnd.dovecot.pipe (with `learn`). */
  learnSocket: string;
  /** Temp dir holding config, base_dir, state, log and mail; removed by stop(). */
  dir: string;
  configFile: string;
  /** Root of the users' homes: `${mailRoot}/<user>/Maildir`. */
  mailRoot: string;
  /** auth_policy_hash_nonce in force (when authPolicy was given). */
  hashNonce: string;
  log(): Promise<string>;
  /** Poll the log until `pattern` matches. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Stop master and every process it started, then delete the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Stop Dovecot as an admin would, keeping config, mail and log (connections are refused meanwhile). */
  stopService(): Promise<void>;
  /** Start again after stopService(), on the same ports and config; fails if a port was taken meanwhile. */
  startAgain(): Promise<void>;
}

const START_ATTEMPTS = 3;

const live = new Map<string, () => void>();
process.once('exit', () => {
  for (const kill of live.values()) kill();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startDovecot(opts: DovecotOptions = {}): Promise<DovecotInstance> {
  if (process.getuid?.() !== 0) throw new Error('startDovecot must run as root (Dovecot drops to dovecot/dovenull itself)');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-dovecot-'));
  try {
    // mkdtemp gives 0700; the unprivileged auth, login and mail processes must reach inside.
    await chmod(dir, 0o755);
    const mailUser = uidOf('nobody');
    await mkdir(path.join(dir, 'mail'), { mode: 0o755 });
    await chown(path.join(dir, 'mail'), mailUser.uid, mailUser.gid);
    await mkdir(path.join(dir, 'state'), { mode: 0o755 });
    const hashNonce = opts.authPolicy?.hashNonce ?? randomBytes(16).toString('hex');
    const includes = await writeSnippets(dir, opts, hashNonce, mailUser);
    const configFile = path.join(dir, 'dovecot.conf');
    for (let attempt = 1; ; attempt++) {
      const ports = { imap: await freePort(), lmtp: opts.lmtp ? await freePort() : undefined };
      if (ports.lmtp !== undefined) await writeLmtpSnippet(dir, ports.lmtp);
      await writeFile(configFile, buildConfig(dir, ports.imap, opts, mailUser, includes), { mode: 0o600 });
      try {
        const running = await launch(dir, configFile, ports);
        return instance(dir, configFile, ports, hashNonce, running);
      } catch (err) {
        if (attempt < START_ATTEMPTS && /address already in use/i.test((err as Error).message)) continue;
        throw err;
      }
    }
  } catch (err) {
    await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    throw err;
  }
}

const readLogOf = (dir: string) => (): Promise<string> => readFile(path.join(dir, 'dovecot.log'), 'utf8').catch(() => '');

function instance(dir: string, configFile: string, ports: Ports, hashNonce: string, first: Running): DovecotInstance {
  let running: Running | undefined = first;
  let stopping: Promise<void> | undefined;
  const readLog = readLogOf(dir);
  const stopService = async (): Promise<void> => {
    const r = running;
    running = undefined;
    if (r) await r.shutdown();
  };
  return {
    imapPort: ports.imap,
    learnSocket: path.join(dir, 'run', LEARN_SOCKET_DIR, 'ceerion-learn'),
    ...(ports.lmtp !== undefined ? { lmtpPort: ports.lmtp, lmtpSocket: path.join(dir, 'run', 'lmtp') } : {}),
    dir,
    configFile,
    mailRoot: path.join(dir, 'mail'),
    hashNonce,
    log: readLog,
    async waitForLog(pattern, timeoutMs = 10_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const text = await readLog();
        if (pattern.test(text)) return text;
        if (Date.now() > until) throw new Error(`dovecot log did not match ${pattern} within ${timeoutMs}ms:\n${text}`);
        await sleep(100);
      }
    },
    stopService,
    async startAgain() {
      if (stopping) throw new Error('dovecot instance was stopped for good');
      if (running) throw new Error('dovecot is already running');
      running = await launch(dir, configFile, ports);
    },
    stop() {
      stopping ??= (async () => {
        await stopService();
        live.delete(dir);
        await rm(dir, { recursive: true, force: true, maxRetries: 5 });
      })();
      return stopping;
    },
  };
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
}

interface Ports {
  imap: number;
  lmtp: number | undefined;
}

interface Running {
  /** Stop master and wait for every process it started to be gone. */
  shutdown(): Promise<void>;
}

async function launch(dir: string, configFile: string, ports: Ports): Promise<Running> {
  const readLog = readLogOf(dir);
  // -F: master stays our child, so its exit is observable; detached: its own process group.
  const child: ChildProcess = spawn('dovecot', ['-F', '-c', configFile], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  // 'exit', not 'close': processes master started may hold its stdio pipes open after it is gone.
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const spawnError = new Promise<Error>((r) => child.once('error', r));
  const pgid = child.pid;
  if (pgid === undefined) throw new Error(`could not start dovecot: ${(await spawnError).message}`);
  // A test process that dies without stop() must not leave Dovecot running or its dir behind.
  live.set(dir, () => {
    killGroup(pgid);
    rmSync(dir, { recursive: true, force: true });
  });

  const shutdown = async (): Promise<void> => {
    // SIGTERM to the whole group, as systemd stops dovecot.service: a connected IMAP session's
    // process would otherwise linger after master (seconds, until our SIGKILL).
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-pgid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    const timer = setTimeout(() => killGroup(pgid), 10_000);
    await exited;
    clearTimeout(timer);
    // master signals its children as it exits; make sure none still writes into the dir.
    for (let i = 0; i < 50 && (await groupMembers(pgid)).length > 0; i++) {
      if (i === 20) killGroup(pgid);
      await sleep(100);
    }
    // Stopped but kept (stopService): at exit only the dir is left to remove.
    live.set(dir, () => rmSync(dir, { recursive: true, force: true }));
  };

  const deadline = Date.now() + 15_000;
  for (;;) {
    const early = await Promise.race([spawnError, exited.then(() => new Error('exited')), sleep(50).then(() => undefined)]);
    if (early) {
      live.set(dir, () => rmSync(dir, { recursive: true, force: true }));
      throw new Error(`dovecot did not start (${early.message}): ${out}\n${await readLog()}`);
    }
    if ((await greets(ports.imap, '* OK')) && (ports.lmtp === undefined || (await greets(ports.lmtp, '220 ')))) break;
    if (Date.now() > deadline) {
      await shutdown();
      throw new Error(`dovecot on 127.0.0.1:${ports.imap} did not greet within 15s: ${out}\n${await readLog()}`);
    }
  }
  return { shutdown };
}

/** Whether a server on `port` answers with a first line starting with `prefix`. */
function greets(port: number, prefix: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    s.setTimeout(2_000, () => s.destroy());
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n')) {
        resolve(buf.startsWith(prefix));
        s.destroy();
      }
    });
    s.on('error', () => resolve(false));
    s.on('close', () => resolve(false));
  });
}

export interface ImapLoginResult {
  ok: boolean;
  /** The tagged reply, e.g. `a1 NO [AUTHENTICATIONFAILED] Authentication failed.` */
  line: string;
  /** From sending LOGIN to its tagged reply. */
  elapsedMs: number;
}

const imapQuote = (s: string): string => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

/** One connection, one IMAP LOGIN, then LOGOUT. `localAddress` picks the client address (127.0.0.x). */
export function imapLogin(opts: { port: number; user: string; password: string; localAddress?: string; timeoutMs?: number }): Promise<ImapLoginResult> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: opts.port, localAddress: opts.localAddress });
    let buf = '';
    let sentAt = 0;
    let done = false;
    const fail = (err: Error): void => {
      if (done) return;
      done = true;
      s.destroy();
      reject(err);
    };
    s.setTimeout(opts.timeoutMs ?? 30_000, () => fail(new Error(`IMAP timeout; got ${JSON.stringify(buf)}`)));
    s.on('error', fail);
    s.on('close', () => fail(new Error(`IMAP connection closed; got ${JSON.stringify(buf)}`)));
    s.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      if (sentAt === 0 && buf.includes('\r\n')) {
        if (!buf.startsWith('* OK')) return fail(new Error(`unexpected greeting ${JSON.stringify(buf)}`));
        sentAt = performance.now();
        s.write(`a1 LOGIN ${imapQuote(opts.user)} ${imapQuote(opts.password)}\r\n`);
        return;
      }
      const m = /^a1 (OK|NO|BAD)[^\r\n]*/m.exec(buf);
      if (!m || done) return;
      done = true;
      const elapsedMs = performance.now() - sentAt;
      s.end('a2 LOGOUT\r\n');
      s.on('error', () => undefined);
      resolve({ ok: m[1] === 'OK', line: m[0], elapsedMs });
    });
  });
}
