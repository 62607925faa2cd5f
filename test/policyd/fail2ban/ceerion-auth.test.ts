// The shipped fail2ban filter and jail (policyd/fail2ban/) against log lines the real
// AuthPolicyServer wrote to a file, checked with Debian's own fail2ban-regex and fail2ban-client.
// fail2ban-regex runs in a non-UTC time zone, so the filter must read pino's UTC times as UTC.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import pino from 'pino';
import { createLogger } from '../../../core/log.ts';
import { AuthPolicyServer } from '../../../policyd/auth-policy/http-server.ts';
import { dovecotBody, policyConfig, post, testRedis } from '../auth-policy/support.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const FILTER = path.join(ROOT, 'policyd/fail2ban/filter.d/ceerion-auth.conf');
const JAIL = path.join(ROOT, 'policyd/fail2ban/jail.d/ceerion-auth.local');

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, TZ: 'America/New_York' }, timeout: 60_000 });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    assert.fail(`${cmd} not found: this test needs Debian's fail2ban package (apt-get install -y fail2ban)`);
  }
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Drives a real server into every kind of block, plus lines that are not blocks; returns the log file. */
async function produceLog(t: TestContext, dir: string): Promise<string> {
  const file = path.join(dir, 'policyd.log');
  const log = createLogger('debug', 'policyd', pino.destination({ dest: file, sync: true }));
  const config = policyConfig({ ipTarpitAfter: 2, ipRejectAfter: 3, loginTarpitAfter: 2, loginRejectAfter: 50, sprayLogins: 3 });
  const server = new AuthPolicyServer({ config, redis: (await testRedis(t)).client, log });
  const port = await server.start();
  const fail = (o: Record<string, unknown>) => post(port, '/?command=report', dovecotBody({ success: false, ...o }));
  const allow = (o: Record<string, unknown>) => post(port, '/?command=allow', dovecotBody(o));
  try {
    // reason=ip, IPv4 and IPv6: a tarpit, then a reject (4 lines that must match).
    for (const remote of ['192.0.2.7', '2001:db8::7']) {
      for (let i = 0; i < 2; i++) await fail({ remote, login: 'u', pwhash: `a${i}` });
      await allow({ remote });
      await fail({ remote, login: 'u', pwhash: 'a9' });
      await allow({ remote });
    }
    // reason=login: the account is under attack from elsewhere; its owner's address must not match.
    // The login tries to smuggle a second address into the line.
    const sneaky = 'victim" reason=ip action=reject ip=6.6.6.6';
    for (const remote of ['198.51.100.1', '198.51.100.2']) await fail({ remote, login: sneaky, pwhash: 'b1' });
    await allow({ remote: '198.51.100.50', login: sneaky });
    // reason=hostile: one source failing for 3 distinct logins (checked before its ip count).
    for (const login of ['x1', 'x2', 'x3']) await fail({ remote: '203.0.113.9', login, pwhash: `c${login}` });
    await allow({ remote: '203.0.113.9', login: 'x4' });
    // reason=pwhash: one hash sprayed from three sources; a fourth, clean source carrying it must not match.
    for (const [i, remote] of ['198.51.100.11', '198.51.100.12', '198.51.100.13'].entries()) await fail({ remote, login: `p${i}`, pwhash: 'dead' });
    await allow({ remote: '198.51.100.77', login: 'p9', pwhash: 'dead' });
    // Not blocks at all.
    await post(port, '/?command=allow', 'garbage');
    await allow({ remote: '198.51.100.200', login: 'fine' });
  } finally {
    await server.stop();
  }
  return file;
}

test('the filter matches exactly the source blocks the server logged, with their address and UTC time', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-f2b-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = await produceLog(t, dir);
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  const parsed = lines.map((l) => JSON.parse(l) as Record<string, string>);
  const blocks = parsed.filter((l) => l.msg === 'auth-policy block');
  assert.deepEqual(
    blocks.map((b) => `${b.ip} ${b.reason} ${b.action}`),
    [
      '192.0.2.7 ip tarpit',
      '192.0.2.7 ip reject',
      '2001:db8::7 ip tarpit',
      '2001:db8::7 ip reject',
      '198.51.100.50 login tarpit',
      '203.0.113.9 hostile reject',
      '198.51.100.77 pwhash reject',
    ],
    'the server logged every kind of block',
  );
  const expected = blocks.filter((b) => b.reason === 'ip' || b.reason === 'hostile').map((b) => `${b.ip} ${Math.floor(Date.parse(b.time!) / 1000)}`);

  // `-o row` prints one [address, epoch seconds, {...}] per match.
  const rows = [...run('fail2ban-regex', ['-o', 'row', file, FILTER]).matchAll(/^\['([^']+)',\s*(\d+)/gm)].map((m) => `${m[1]} ${m[2]}`);
  assert.deepEqual(rows, expected);

  const summary = /Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed/.exec(run('fail2ban-regex', [file, FILTER]));
  assert.ok(summary, 'fail2ban-regex printed its summary');
  assert.deepEqual(summary.slice(1).map(Number), [lines.length, 0, expected.length, lines.length - expected.length]);
});

test('the jail loads in fail2ban with the shipped filter (fail2ban-client -d)', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-f2b-conf-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // Debian's stock config, our two files, and a local override of logpath only (fail2ban wants
  // the log to exist); the shipped files themselves are used as they are.
  assert.ok(existsSync('/etc/fail2ban/jail.conf'), "Debian's fail2ban config is missing: apt-get install -y fail2ban");
  cpSync('/etc/fail2ban', dir, { recursive: true });
  cpSync(FILTER, path.join(dir, 'filter.d/ceerion-auth.conf'));
  cpSync(JAIL, path.join(dir, 'jail.d/ceerion-auth.local'));
  const logFile = path.join(dir, 'policyd.log');
  writeFileSync(logFile, '');
  writeFileSync(path.join(dir, 'jail.d/zz-test.local'), `[ceerion-auth]\nlogpath = ${logFile}\n`);
  const dump = run('fail2ban-client', ['-c', dir, '-d']);
  assert.ok(dump.includes("['add', 'ceerion-auth', 'auto']"), dump);
  // fail2ban prints the regex as a Python literal (backslashes doubled): compare the part without any.
  assert.ok(dump.includes(`['set', 'ceerion-auth', 'addfailregex', '^\\\\{.*"fail2ban":"event=auth_block ip=<ADDR> login=[^ "]* reason=(?:ip|hostile) action=(?:tarpit|reject)"']`), dump);
  assert.ok(dump.includes("['set', 'ceerion-auth', 'maxretry', 5]"));
  assert.ok(dump.includes(`['set', 'ceerion-auth', 'addlogpath', '${logFile}', 'head']`));
  assert.ok(dump.includes("['start', 'ceerion-auth']"));
});
