/**
 * Carries out a setup plan on the host: packages (apt-get, debconf answered for Postfix), the mail
 * user, missing directories, the changed files (each replaced in one rename; a file that existed
 * is first copied to FILE.ceerion-orig, once), and the Sieve scripts compiled.
 * Every step leaves what is already right alone, so a second run does nothing.
 */
import { execFile } from 'node:child_process';
import { access, chmod, chown, copyFile, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { DirSpec, FileChange } from './files.ts';
import { readIfExists } from './gather.ts';

const run = promisify(execFile);

export const BACKUP_SUFFIX = '.ceerion-orig';

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

async function exec(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<void> {
  try {
    await run(cmd, args, { timeout: 30 * 60_000, maxBuffer: 64 * 1024 * 1024, ...(env ? { env: { ...process.env, ...env } } : {}) });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(e.stderr || e.stdout || e.message).trim()}`);
  }
}

/** Why packages cannot be installed here, or undefined when they can. */
export async function cannotInstall(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not root';
  if (!(await exists('/usr/bin/apt-get'))) return 'no apt-get';
  return undefined;
}

/**
 * The debconf answers for a Postfix installed by setup: "Internet Site" with the configured host
 * name, so Debian writes its usual main.cf and setup adds to it as to any existing install.
 */
export function postfixDebconf(hostname: string): string {
  return [`postfix postfix/main_mailer_type select Internet Site`, `postfix postfix/mailname string ${hostname}`, ''].join('\n');
}

export async function installPackages(packages: string[], hostname: string): Promise<string[]> {
  if (packages.length === 0) return [];
  const commands: string[] = [];
  if (packages.includes('postfix')) {
    const file = path.join('/tmp', `ceerion-setup-debconf-${process.pid}`);
    await writeFile(file, postfixDebconf(hostname), { mode: 0o600 });
    try {
      await exec('debconf-set-selections', [file]);
    } finally {
      await rm(file, { force: true });
    }
    commands.push('debconf-set-selections (postfix: Internet Site)');
  }
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  await exec('apt-get', ['update', '-q'], env);
  await exec('apt-get', ['install', '-y', '-q', ...packages], env);
  commands.push('apt-get update', `apt-get install -y ${packages.join(' ')}`);
  return commands;
}

/** uid and gid of a user or group name from /etc/passwd and /etc/group (numbers pass through). */
async function idOf(name: string | undefined, db: 'passwd' | 'group'): Promise<number> {
  if (name === undefined) return 0;
  if (/^\d+$/.test(name)) return Number(name);
  const text = (await readIfExists(`/etc/${db}`)) ?? '';
  const f = text
    .split('\n')
    .map((l) => l.split(':'))
    .find((x) => x[0] === name);
  if (!f) throw new Error(`no ${db === 'passwd' ? 'user' : 'group'} ${name} on this host`);
  return Number(f[2]);
}

export async function createMailUser(user: string, home: string): Promise<string> {
  await exec('useradd', ['--system', '--user-group', '--home-dir', home, '--no-create-home', '--shell', '/usr/sbin/nologin', user]);
  return `useradd --system --user-group --home-dir ${home} ${user}`;
}

/** Creates the directories that are missing; existing ones keep their owner and mode. */
export async function ensureDirs(dirs: DirSpec[], dryRun: boolean): Promise<string[]> {
  const commands: string[] = [];
  for (const d of dirs) {
    if (await exists(d.path)) continue;
    commands.push(`install -d -m ${d.mode.toString(8)} -o ${d.owner ?? 'root'} -g ${d.group ?? 'root'} ${d.path}`);
    if (dryRun) continue;
    await mkdir(d.path, { recursive: true });
    await chown(d.path, await idOf(d.owner, 'passwd'), await idOf(d.group, 'group'));
    await chmod(d.path, d.mode);
  }
  return commands;
}

/** Whether a changed file is a Sieve script, so the directory must be compiled again. */
const isSieve = (c: FileChange): boolean => c.path.endsWith('.sieve');

export async function writeChanges(changes: FileChange[]): Promise<string[]> {
  const commands: string[] = [];
  for (const c of changes) {
    let mode = c.mode;
    let uid = 0;
    let gid = await idOf(c.group, 'group');
    if (c.before !== undefined) {
      const st = await stat(c.path);
      if (c.keepMode) ({ mode, uid, gid } = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid });
      // The admin's original, kept once: later runs must not overwrite it with our own output.
      if (!(await exists(c.path + BACKUP_SUFFIX))) {
        await copyFile(c.path, c.path + BACKUP_SUFFIX);
        commands.push(`cp -p ${c.path} ${c.path}${BACKUP_SUFFIX}`);
      }
    }
    await mkdir(path.dirname(c.path), { recursive: true });
    // Written aside, owner and mode set, then renamed over: no reader sees half a file, and a
    // file with a password is never more readable than its final mode.
    const temp = `${c.path}.ceerion-tmp-${process.pid}`;
    await writeFile(temp, c.text, { mode: 0o600, flag: 'w' });
    try {
      await chown(temp, uid, gid);
      await chmod(temp, mode);
      await rename(temp, c.path);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }
  return commands;
}

/**
 * sievec on the scripts' directory when a script changed or a compiled .svbin is missing: the
 * directory belongs to root, so Dovecot (running as the mail user) could not save what it compiles.
 */
export async function compileSieve(sieveDir: string, dovecotConf: string, changes: FileChange[], dryRun: boolean): Promise<string[]> {
  const names = (await readdir(sieveDir).catch(() => [] as string[])).filter((n) => n.endsWith('.sieve'));
  const missing = [];
  for (const n of names) if (!(await exists(path.join(sieveDir, n.replace(/\.sieve$/, '.svbin'))))) missing.push(n);
  if (!changes.some(isSieve) && (names.length === 0 || missing.length === 0)) return [];
  const command = `sievec -c ${dovecotConf} ${sieveDir}`;
  if (dryRun) return [command];
  await exec('sievec', ['-c', dovecotConf, sieveDir]);
  return [command];
}
