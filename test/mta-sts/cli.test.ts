/**
 * `ceerion mta-sts serve|show` and `ceerion dns records|check` as an operator runs them: child
 * processes, a YAML config, the server on its own port. The id in the `_mta-sts` TXT record
 * `dns records` prints is the id of the policy the server serves, and it moves with the policy.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import YAML from 'yaml';
import { policyId, POLICY_PATH } from '../../mta-sts/policy.ts';
import { startDnsmasq } from '../harness/dnsmasq.ts';
import { freePort } from '../harness/postfix.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/ceerion.mjs');
// The parent's CEERION_* settings and test-runner variables must not leak into the children.
const ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CEERION_') && !k.startsWith('NODE_TEST')));

function ceerion(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: ENV, encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(err);
      resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
    });
  });
}

function writeConfig(t: TestContext, mtaSts: Record<string, unknown>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-mta-sts-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'ceerion.yml');
  const config = { hostname: 'mx1.example.com', milter: { checks: { dkimSign: { keysDir: path.join(dir, 'dkim') } } }, mtaSts };
  writeFileSync(file, YAML.stringify(config));
  return file;
}

/** `mta-sts serve` until the test ends; resolves once it printed its address. */
async function serve(t: TestContext, config: string, port: number) {
  const child = spawn(process.execPath, [BIN, 'mta-sts', 'serve', '-c', config, '--listen', `inet:127.0.0.1:${port}`, '--metrics-port', '0', '--log-level', 'warn'], { cwd: ROOT, env: ENV });
  let stderr = '';
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
      if (stderr.includes('mta-sts on http://')) resolve();
    });
    void exited.then((code) => reject(new Error(`mta-sts serve exited ${code}: ${stderr}`)));
  });
  return { child, exited, stderr: () => stderr, stdout: () => stdout };
}

function fetchPolicy(port: number, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: POLICY_PATH, headers: { host }, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (s: string) => (body += s));
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .once('error', reject);
  });
}

const zoneId = (zone: string) => /^_mta-sts\.example\.com\.\tIN\tTXT\t"v=STSv1; id=([A-Za-z0-9]+)"$/m.exec(zone)?.[1];

test('serve, show and dns records agree on the policy id, and a changed policy changes it', async (t) => {
  const first = writeConfig(t, { policies: { 'example.com': { mode: 'testing', mx: ['mx1.example.com'], maxAge: 86400 } } });
  const port = await freePort();
  const server = await serve(t, first, port);
  const served = await fetchPolicy(port, 'mta-sts.example.com');
  assert.equal(served.status, 200);
  assert.equal(served.body, 'version: STSv1\r\nmode: testing\r\nmx: mx1.example.com\r\nmax_age: 86400\r\n');
  assert.equal((await fetchPolicy(port, 'mta-sts.example.org')).status, 404);

  const records = await ceerion(['dns', 'records', 'example.com', '-c', first]);
  assert.equal(records.code, 0, records.stderr);
  assert.equal(zoneId(records.stdout), policyId(served.body));
  assert.match(records.stdout, /^; serve the policy at https:\/\/mta-sts\.example\.com\/\.well-known\/mta-sts\.txt \(mode: testing, mx: mx1\.example\.com, max_age: 86400\)/m);
  const show = await ceerion(['mta-sts', 'show', 'example.com', '-c', first]);
  assert.equal(show.code, 0, show.stderr);
  assert.ok(show.stdout.includes(`_mta-sts.example.com.\tIN\tTXT\t"v=STSv1; id=${policyId(served.body)}"`), show.stdout);
  assert.ok(show.stdout.includes(served.body.replace(/\r\n/g, '\n')));

  // SIGTERM: a clean stop, exit 0.
  server.child.kill('SIGTERM');
  assert.equal(await server.exited, 0, server.stderr());

  const second = writeConfig(t, { policies: { 'example.com': { mode: 'enforce', mx: ['mx1.example.com'], maxAge: 86400 } } });
  const again = await serve(t, second, port);
  const enforced = await fetchPolicy(port, 'mta-sts.example.com');
  assert.match(enforced.body, /mode: enforce/);
  const newId = zoneId((await ceerion(['dns', 'records', 'example.com', '-c', second])).stdout);
  assert.equal(newId, policyId(enforced.body));
  assert.notEqual(newId, policyId(served.body));
  again.child.kill('SIGTERM');
  assert.equal(await again.exited, 0);
});

test('dns check: the published _mta-sts id must be the served one; unconfigured domains keep the dated id', async (t) => {
  const config = writeConfig(t, { policies: { 'example.com': { mode: 'enforce', mx: ['mx1.example.com'] } } });
  const id = zoneId((await ceerion(['dns', 'records', 'example.com', '-c', config])).stdout)!;
  const zone = (stsId: string) => ({
    txt: {
      'example.com': ['v=spf1 mx -all'],
      '_dmarc.example.com': ['v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com'],
      '_mta-sts.example.com': [`v=STSv1; id=${stsId}`],
      '_smtp._tls.example.com': ['v=TLSRPTv1; rua=mailto:postmaster@example.com'],
    },
    mx: { 'example.com': [{ exchange: 'mx1.example.com', priority: 10 }] },
  });
  const good = await startDnsmasq(zone(id));
  t.after(() => good.stop());
  const ok = await ceerion(['dns', 'check', 'example.com', '-c', config, '--server', good.server]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /\| MTA-STS +\| _mta-sts\.example\.com +\| ok +\|/);
  const stale = await startDnsmasq(zone('20240101T000000'));
  t.after(() => stale.stop());
  const bad = await ceerion(['dns', 'check', 'example.com', '-c', config, '--server', stale.server]);
  assert.equal(bad.code, 1);
  assert.ok(bad.stdout.includes(`| MTA-STS `) && bad.stdout.includes(`id=20240101T000000 is published; the served policy has id=${id}`), bad.stdout);

  const other = await ceerion(['dns', 'records', 'other.example', '-c', config]);
  assert.match(other.stdout, /^_mta-sts\.other\.example\.\tIN\tTXT\t"v=STSv1; id=\d{8}T000000"$/m);
  const missing = await ceerion(['mta-sts', 'show', 'other.example', '-c', config]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no policy for other\.example in mtaSts\.policies/);
});

test('serve refuses a unix --listen and a bad policy with exit 2, naming the problem', async (t) => {
  const config = writeConfig(t, { policies: { 'example.com': { mode: 'enforce', mx: ['mx1.example.com'] } } });
  const unix = await ceerion(['mta-sts', 'serve', '-c', config, '--listen', 'unix:/tmp/x.sock', '--metrics-port', '0']);
  assert.equal(unix.code, 2);
  assert.match(unix.stderr, /--listen must be inet:HOST:PORT/);
  const bad = writeConfig(t, { policies: { 'example.com': { mode: 'enforce' } } });
  const r = await ceerion(['mta-sts', 'serve', '-c', bad, '--metrics-port', '0']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /mtaSts\.policies\.example\.com\.mx: mode enforce needs at least one mx host/);
});
