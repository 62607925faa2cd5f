// Running what `ceerion setup` wrote: a private Postfix and Dovecot started from the set-up copies
// with only the instance-specific settings on top (loopback high ports, own queue/base/state dirs,
// logs in the temp dir), and the suite's services started through the CLI as an admin would.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, cp, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import { canConnect, ROOT } from '../../harness/milter-process.ts';

const run = promisify(execFile);

/**
 * Cleanups run last-registered first, from one t.after hook: daemons stop before the temp dir
 * they run in is removed (node's t.after hooks run in registration order).
 */
export type Defer = (fn: () => Promise<unknown> | unknown) => void;
export function deferrer(t: TestContext): Defer {
  const fns: Array<() => Promise<unknown> | unknown> = [];
  t.after(async () => {
    for (const fn of fns.reverse()) await fn();
  });
  return (fn) => fns.push(fn);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `ceerion setup …` through commander (test/stack/setup/run-setup.ts). */
export async function setupCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'run-setup.ts'), 'setup', ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** Every file under the dirs with its bytes' hash and mode: equal snapshots mean nothing was touched. */
export async function snapshot(...dirs: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.set(p, `${((await stat(p)).mode & 0o7777).toString(8)} ${createHash('sha256').update(await readFile(p)).digest('hex')}`);
    }
  };
  for (const d of dirs) await walk(d);
  return out;
}

async function waitForLine(port: number, prefix: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = await new Promise<string>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      let buf = '';
      s.setTimeout(2_000, () => s.destroy());
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        if (buf.includes('\n')) {
          resolve(buf);
          s.destroy();
        }
      });
      s.on('error', () => resolve(''));
      s.on('close', () => resolve(buf));
    });
    if (line.startsWith(prefix)) return;
    if (Date.now() > deadline) throw new Error(`127.0.0.1:${port} did not greet with ${prefix} within ${timeoutMs}ms (got ${JSON.stringify(line)})`);
    await sleep(100);
  }
}

/**
 * The set-up Postfix, copied into its own config dir with the instance settings on top (the
 * set-up copy stays as setup left it). Every service unchrooted: a chroot in a temp queue would
 * need the copies of /etc files Debian's init script makes.
 */
export async function startPostfixFrom(defer: Defer, setupDir: string, dir: string, ports: { smtp: number; submission: number }): Promise<{ log: () => Promise<string> }> {
  const etc = path.join(dir, 'pf-instance');
  await mkdir(etc, { recursive: true, mode: 0o755 });
  for (const f of ['main.cf', 'master.cf']) await copyFile(path.join(setupDir, f), path.join(etc, f));
  const maillog = path.join(dir, 'maillog');
  await run('postconf', ['-c', etc, '-e', 'inet_interfaces=127.0.0.1', 'inet_protocols=ipv4', 'myorigin=$myhostname', `maillog_file=${maillog}`, `maillog_file_prefixes=${dir}`, 'alias_maps=', 'alias_database=']);
  await run('postconf', ['-c', etc, '-F', `smtp/inet/service=127.0.0.1:${ports.smtp}`, `submission/inet/service=127.0.0.1:${ports.submission}`]);
  await run('postconf', ['-c', etc, '-F', '*/*/chroot=n']);
  const log = (): Promise<string> => readFile(maillog, 'utf8').catch(() => '');
  const pidFile = path.join((await run('postconf', ['-c', etc, '-h', 'queue_directory'])).stdout.trim(), 'pid', 'master.pid');
  defer(async () => {
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    await run('postfix', ['-c', etc, 'stop']).catch(() => undefined);
    for (let i = 0; i < 100 && pid && alive(pid); i++) await sleep(100);
    // master's children (postlogd too) must be gone before their dirs are.
    if (pid) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // all gone
      }
    }
  });
  try {
    await run('postfix', ['-c', etc, 'start'], { timeout: 30_000 });
  } catch (err) {
    throw new Error(`postfix start failed: ${(err as Error).message}\n${await log()}`);
  }
  await waitForLine(ports.smtp, '220', 10_000);
  return { log };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The set-up Dovecot: a copy of its directory (the files setup wrote point into the set-up one,
 * which stays as setup left it), the instance settings after its dovecot.conf. Debian's
 * 10-ssl.conf names /etc/dovecot/private/dovecot.pem, which the package did not create on this
 * machine, and Dovecot reads it while parsing even with ssl = no: the copy leaves it out.
 */
export async function startDovecotFrom(defer: Defer, setupDir: string, dir: string, imapPort: number): Promise<{ log: () => Promise<string> }> {
  const logFile = path.join(dir, 'dovecot.log');
  const conf = path.join(dir, 'dovecot-instance.conf');
  const copy = path.join(dir, 'dc-instance');
  await cp(setupDir, copy, { recursive: true });
  const ssl = path.join(copy, 'conf.d', '10-ssl.conf');
  await writeFile(ssl, (await readFile(ssl, 'utf8')).replace(/^ssl_(cert|key) = </gm, '#$&'));
  await mkdir(path.join(dir, 'dc-state'), { recursive: true, mode: 0o755 });
  await writeFile(
    conf,
    [
      `!include ${path.join(copy, 'dovecot.conf')}`,
      `base_dir = ${path.join(dir, 'dc-run')}`,
      `state_dir = ${path.join(dir, 'dc-state')}`,
      `instance_name = ceerion-setup-${path.basename(dir)}`,
      `log_path = ${logFile}`,
      'listen = 127.0.0.1',
      // No certificate on this machine (Debian's postinst makes one only with ssl-cert's snakeoil).
      'ssl = no',
      // Without managesieve's port 4190.
      'protocols = imap lmtp',
      'service imap-login {',
      '  inet_listener imap {',
      `    port = ${imapPort}`,
      '  }',
      '  inet_listener imaps {',
      '    port = 0',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  const log = (): Promise<string> => readFile(logFile, 'utf8').catch(() => '');
  const child: ChildProcess = spawn('dovecot', ['-F', '-c', conf], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  defer(async () => {
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      // gone
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }, 10_000);
    await exited;
    clearTimeout(timer);
  });
  try {
    await Promise.race([waitForLine(imapPort, '* OK', 15_000), exited.then(() => Promise.reject(new Error('dovecot exited')))]);
  } catch (err) {
    throw new Error(`dovecot did not start: ${(err as Error).message}\n${out}\n${await log()}`);
  }
  return { log };
}

/** `ceerion <command> --config FILE`, ready once `listen` accepts connections. */
export async function startService(defer: Defer, command: string, configFile: string, listen: string): Promise<{ output: () => string }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/ceerion.mjs'), command, '--config', configFile, '--metrics-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  defer(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  });
  const deadline = Date.now() + 30_000;
  while (!(await canConnect(listen))) {
    if (child.exitCode !== null) throw new Error(`ceerion ${command} exited with ${child.exitCode}: ${out}`);
    if (Date.now() > deadline) throw new Error(`ceerion ${command} did not listen on ${listen}: ${out}`);
    await sleep(100);
  }
  return { output: () => out };
}
