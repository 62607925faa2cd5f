/**
 * Shared by the `ceerion account` CLI tests (two files, so each stays well inside the runner's
 * per-file timeout: every case starts a Dovecot and runs the CLI several times).
 * `ceerion account …` as an operator runs it: the real CLI in a child process against a schema of
 * its own, and a private Dovecot 2.3 reading that schema through the shipped sql-accounts.conf, so
 * every change is checked by what Dovecot does with it (IMAP LOGIN, doveadm user).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { mainCfLines, POSTFIX_MAPS } from '../../accounts/postfix-maps.ts';
import { imapLogin, startDovecot, type DovecotInstance } from '../harness/dovecot.ts';
import { freePort } from '../harness/postfix.ts';
import { testSchema } from '../harness/postgres.ts';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const BIN = path.join(ROOT, 'bin/ceerion.mjs');
export const exec = promisify(execFile);

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The parent's environment without CEERION_* settings or the test runner's own variables. */
export function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CEERION_') && !k.startsWith('NODE_TEST')));
  return { ...env, ...extra };
}

/**
 * Runs `ceerion account ARGS`; `input` is written to its stdin (a pipe, never a terminal), which
 * is then closed, or with `keepStdinOpen` left open until the command exits.
 */
export async function ceerion(env: Record<string, string>, args: string[], input = '', opts: { keepStdinOpen?: boolean } = {}): Promise<Run> {
  const child = spawn(process.execPath, [BIN, 'account', ...args], { cwd: ROOT, env: childEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  child.stdin.on('error', () => {});
  if (opts.keepStdinOpen) child.stdin.write(input);
  else child.stdin.end(input);
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  child.stdin.destroy();
  return { code, stdout, stderr };
}

export interface Setup {
  env: Record<string, string>;
  dovecot: DovecotInstance;
  /** `ceerion account ARGS`, which must exit 0; returns the run. */
  ok(args: string[], input?: string): Promise<Run>;
  run(args: string[], input?: string): Promise<Run>;
  login(user: string, password: string): Promise<boolean>;
  query<T extends pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<T[]>;
  /** The options that make the CLI flush this Dovecot's auth cache. */
  flush: string[];
}

export async function setup(t: TestContext): Promise<Setup> {
  const db = testSchema(t);
  const env = { CEERION_DATABASE_URL: db.url, CEERION_DATABASE_SCHEMA: db.schema };
  // Dovecot reads the accounts table the CLI creates on its first run; it connects on first use.
  const dovecot = await startDovecot({ sqlAccounts: db });
  t.after(() => dovecot.stop());
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  t.after(() => client.end());
  const run = (args: string[], input?: string) => ceerion(env, args, input);
  return {
    env,
    dovecot,
    run,
    async ok(args, input) {
      const r = await run(args, input);
      assert.equal(r.code, 0, `account ${args.join(' ')}: ${r.stderr}`);
      return r;
    },
    login: async (user, password) => (await imapLogin({ port: dovecot.imapPort, user, password })).ok,
    query: async (sql, params) => (await client.query(sql.replaceAll('$schema', db.schema), params)).rows,
    flush: ['--dovecot-config', dovecot.configFile],
  };
}

