// Starts a private redis-server (Debian's binary) on a free loopback port, with its own working
// directory under a temp dir and no persistence, for tests that must stop and restart Redis or
// read its statistics without other tests' traffic. The shared Redis at 127.0.0.1:6379 is for
// everything else.
//
// - stop() ends the server and keeps the port and the directory; start() brings it back on the
//   same port, empty (nothing is saved), as after a crash of a cache-only Redis.
// - close() stops it and removes the directory. A process still running when the test process
//   exits is killed, so a failed test leaves nothing behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './postfix.ts';

const REDIS_SERVER = process.env.REDIS_SERVER ?? '/usr/bin/redis-server';
const START_ATTEMPTS = 3;

export interface PrivateRedis {
  /** `redis://127.0.0.1:PORT`, for `redis.url`. */
  url: string;
  port: number;
  /** The server's working directory (removed by close()). */
  dir: string;
  /** The server's log so far (all runs). */
  output(): string;
  /** The running server's process id (to SIGSTOP it and simulate a hung Redis), or undefined. */
  pid(): number | undefined;
  /** Ends the server (SIGTERM, then SIGKILL after 5 s). */
  stop(): Promise<void>;
  /** Starts it again on the same port; resolves once it answers PING. */
  start(): Promise<void>;
  /** stop() and remove the directory. */
  close(): Promise<void>;
}

const live = new Set<ChildProcess>();
const dirs = new Set<string>();
process.once('exit', () => {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** True once something on the port answers PING with +PONG. */
function pings(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let answer = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.on('data', (b) => {
      answer += b.toString();
      if (answer.includes('\r\n')) done(answer.startsWith('+PONG'));
    });
    socket.once('connect', () => socket.write('PING\r\n'));
  });
}

export async function startRedis(): Promise<PrivateRedis> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-redis-'));
  dirs.add(dir);
  let out = '';
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const launch = async (port: number): Promise<void> => {
    const args = [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--dir', dir,
      // No RDB snapshots and no AOF: a restart starts empty, and nothing is written to disk.
      '--save', '',
      '--appendonly', 'no',
      '--daemonize', 'no',
      '--logfile', '',
      '--databases', '1',
    ];
    const c = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    live.add(c);
    c.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    c.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    exited = new Promise<void>((r) => c.once('close', () => r()));
    const spawnError = new Promise<Error>((r) => c.once('error', r));
    const deadline = Date.now() + 10_000;
    for (;;) {
      const early = await Promise.race([spawnError, exited.then(() => new Error(`exited with ${c.exitCode ?? c.signalCode}`)), new Promise<undefined>((r) => setTimeout(r, 25))]);
      if (early) {
        live.delete(c);
        throw new Error(`redis-server on port ${port} did not start (${early.message}): ${out.slice(-2000)}`);
      }
      if (await pings(port)) return;
      if (Date.now() > deadline) {
        c.kill('SIGKILL');
        live.delete(c);
        throw new Error(`redis-server on 127.0.0.1:${port} did not answer PING within 10 s: ${out.slice(-2000)}`);
      }
    }
  };

  const stop = async (): Promise<void> => {
    const c = child;
    if (!c) return;
    child = undefined;
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
    live.delete(c);
  };

  let port = 0;
  try {
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      try {
        await launch(port);
        break;
      } catch (err) {
        // Another process may take the port between freePort() and redis-server binding it.
        if (attempt < START_ATTEMPTS && /address already in use/i.test((err as Error).message)) continue;
        throw err;
      }
    }
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    dirs.delete(dir);
    throw err;
  }

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    output: () => out,
    pid: () => child?.pid,
    stop,
    async start() {
      if (child) return;
      await launch(port);
    },
    async close() {
      await stop();
      await rm(dir, { recursive: true, force: true });
      dirs.delete(dir);
    },
  };
}
