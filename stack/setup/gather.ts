/**
 * What `ceerion setup` reads before it plans: the shipped templates, the host's current files and
 * a few facts only the installed programs know (Postfix's queue_directory, Dovecot's base_dir,
 * which packages are installed, the mail user). Reads only; nothing here writes.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { POSTFIX_MAPS, POSTFIX_MAPS_DIR } from '../../accounts/postfix-maps.ts';
import type { Config } from '../../core/config/schema.ts';
import { lmtpSnippet } from '../../lmtp-indexer/postfix-snippet.ts';
import { postfixSnippet } from '../../milter/postfix-snippet.ts';
import { policySnippet } from '../../policyd/postfix-snippet.ts';
import { SHIPPED, SIEVE_SCRIPTS, sieveScriptFile } from '../dovecot/config.ts';
import { dovecotCurrentPaths, type ShippedName } from './dovecot.ts';
import type { SetupFacts, SetupOptions, SetupTemplates } from './plan.ts';

const run = promisify(execFile);

/** A file's text, or undefined when it does not exist. */
export async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function readTemplates(config: Config): Promise<SetupTemplates> {
  const shipped = {} as Record<ShippedName, string>;
  for (const [name, file] of Object.entries(SHIPPED)) shipped[name as ShippedName] = await readFile(file, 'utf8');
  const sieve = {} as SetupTemplates['dovecot']['sieve'];
  for (const name of SIEVE_SCRIPTS) sieve[name] = await readFile(sieveScriptFile(name), 'utf8');
  const postfixMaps: Record<string, string> = {};
  for (const m of POSTFIX_MAPS) postfixMaps[m.file] = await readFile(path.join(POSTFIX_MAPS_DIR, m.file), 'utf8');
  return {
    postfixSnippets: { milter: postfixSnippet(config.milter.listen), policy: policySnippet(config.policyd.listen), lmtp: lmtpSnippet(config.lmtp.listen) },
    postfixMaps,
    dovecot: { shipped, sieve },
  };
}

/** One value from a program, or the fallback when the program is missing or fails (not installed yet). */
async function ask(cmd: string, args: string[], fallback: string): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { timeout: 30_000 });
    return stdout.trim() || fallback;
  } catch {
    return fallback;
  }
}

/** Packages dpkg reports as installed, among `names`. */
export async function installedPackages(names: string[]): Promise<Set<string>> {
  try {
    const { stdout } = await run('dpkg-query', ['-W', '-f=${Package} ${db:Status-Status}\\n', ...names], { timeout: 30_000 });
    return parseDpkgStatus(stdout);
  } catch (err) {
    // dpkg-query exits 1 when some names are unknown, but still prints the others.
    const out = (err as { stdout?: string }).stdout;
    return out ? parseDpkgStatus(out) : new Set();
  }
}

export function parseDpkgStatus(out: string): Set<string> {
  return new Set(
    out
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[1] === 'installed')
      .map((f) => f[0]!),
  );
}

/** The primary group name of `user`, or undefined when there is no such user. */
export async function primaryGroup(user: string): Promise<string | undefined> {
  const passwd = (await readIfExists('/etc/passwd')) ?? '';
  const gid = passwd
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => f[0] === user)?.[3];
  if (gid === undefined) return undefined;
  const groups = (await readIfExists('/etc/group')) ?? '';
  return groups
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => f[2] === gid)?.[0] ?? gid;
}

/** Debian's starting main.cf, for a Postfix installed with "No configuration" (it has none). */
export const DEBIAN_MAIN_CF = '/usr/share/postfix/main.cf.debian';

export async function readFacts(opts: SetupOptions, packages: string[]): Promise<SetupFacts> {
  const existing = await readIfExists(path.join(opts.postfixDir, 'main.cf'));
  // What Debian's postinst tells such an admin to start from: `cp main.cf.debian main.cf`.
  const mainCf = existing ?? (await readIfExists(DEBIAN_MAIN_CF)) ?? '';
  return {
    mainCfExists: existing !== undefined,
    postfixQueueDir: await ask('postconf', ['-c', opts.postfixDir, '-h', 'queue_directory'], '/var/spool/postfix'),
    dovecotBaseDir: await ask('doveconf', ['-c', path.join(opts.dovecotDir, 'dovecot.conf'), '-h', 'base_dir'], '/run/dovecot'),
    mainCf,
    masterCf: (await readIfExists(path.join(opts.postfixDir, 'master.cf'))) ?? '',
    installedPackages: await installedPackages(packages),
    mailGroup: await primaryGroup(opts.mailUser),
    newHashNonce: randomBytes(32).toString('hex'),
    cwd: process.cwd(),
  };
}

/** The current text of every path in `paths` (undefined: missing). */
export async function readCurrent(paths: string[]): Promise<Map<string, string | undefined>> {
  const out = new Map<string, string | undefined>();
  for (const p of new Set(paths)) out.set(p, await readIfExists(p));
  return out;
}

export { dovecotCurrentPaths };
