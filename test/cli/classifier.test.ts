/**
 * `ceerion train | classify | learn | model …` as an operator runs them: real child processes
 * against the real PostgreSQL, a schema of their own (CEERION_DATABASE_SCHEMA), corpora written
 * as a maildir and a directory of files.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { loadSpamAssassin } from '../../classifier/eval/corpus.ts';
import { freePort } from '../harness/postfix.ts';
import { testSchema } from '../harness/postgres.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/ceerion.mjs');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function ceerion(args: string[], env: Record<string, string>, input?: Buffer): Promise<Run> {
  // The parent's CEERION_* settings and test-runner variables must not leak into the child.
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CEERION_') && !k.startsWith('NODE_TEST')));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...base, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.end(input ?? Buffer.alloc(0));
  });
}

function setup(t: TestContext) {
  const db = testSchema(t);
  const env = { CEERION_DATABASE_URL: db.url, CEERION_DATABASE_SCHEMA: db.schema };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ceerion-classifier-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cli = (args: string[], input?: Buffer) => ceerion(args, env, input);
  const ok = async (args: string[], input?: Buffer): Promise<Run> => {
    const r = await cli(args, input);
    assert.equal(r.code, 0, `ceerion ${args.join(' ')}: ${r.stderr}`);
    return r;
  };
  return { env, dir, cli, ok };
}

/** Spam as a maildir (cur/ and new/), ham as a plain directory; the next messages held out. */
async function writeCorpus(dir: string, perClass: number) {
  const spam = await loadSpamAssassin({ groups: ['spam-1'], limitPerGroup: perClass + 1 });
  const ham = await loadSpamAssassin({ groups: ['easy-ham-1'], limitPerGroup: perClass + 1 });
  const maildir = path.join(dir, 'Junk');
  for (const sub of ['cur', 'new', 'tmp']) mkdirSync(path.join(maildir, sub), { recursive: true });
  spam.slice(0, perClass).forEach((m, i) => writeFileSync(path.join(maildir, i % 2 ? 'cur' : 'new', `${1700000000 + i}.M${i}.host:2,S`), m.raw));
  // Something in tmp/ is a delivery in progress and must not be read.
  writeFileSync(path.join(maildir, 'tmp', 'partial'), 'Subject: half a message');
  const hamDir = path.join(dir, 'ham');
  mkdirSync(hamDir);
  ham.slice(0, perClass).forEach((m, i) => writeFileSync(path.join(hamDir, `${i}.eml`), m.raw));
  const spamFile = path.join(dir, 'held-spam.eml');
  const hamFile = path.join(dir, 'held-ham.eml');
  writeFileSync(spamFile, spam[perClass]!.raw);
  writeFileSync(hamFile, ham[perClass]!.raw);
  return { maildir, hamDir, spamFile, hamFile, spamRaw: spam[perClass]!.raw };
}

test('train, classify, learn, model export / verify / import / list / activate / compact', async (t) => {
  const { dir, cli, ok } = setup(t);
  const c = await writeCorpus(dir, 60);

  const trained = await ok(['train', '--spam', c.maildir, '--ham', c.hamDir, '--note', 'cli test']);
  assert.match(trained.stdout, /^trained on 120 messages \(60 spam, 60 ham\) in .*mode stacked$/m);
  assert.match(trained.stdout, /^saved model version 1 \(.* sha256 [0-9a-f]{64}\), active/m);
  // Progress goes to stderr as plain lines (no terminal here), ending at the total.
  assert.match(trained.stderr, /^reading messages: 120\/120 \(100%\), [\d.]+ msgs\/s, took /m);
  assert.doesNotMatch(trained.stderr, /\r/);

  const classify = async (file: string) => JSON.parse((await ok(['classify', file, '--json'])).stdout);
  const spam = await classify(c.spamFile);
  const ham = await classify(c.hamFile);
  assert.ok(spam.score > ham.score, `spam ${spam.score} scores above ham ${ham.score}`);
  assert.equal(ham.verdict, 'inbox');
  assert.notEqual(spam.verdict, 'inbox');
  assert.deepEqual(spam.model, { version: 1, lastEventId: '0', learnsApplied: 0 });
  const bayes = spam.components.find((x: { name: string }) => x.name === 'bayes');
  assert.equal(bayes.voted, true);
  assert.equal(typeof bayes.probability, 'number');
  assert.equal(typeof bayes.contribution, 'number');
  assert.ok(Array.isArray(bayes.details.topSpam) && bayes.details.topSpam.length > 0, 'top tokens are listed');
  assert.equal(typeof bayes.details.topSpam[0].token, 'string');

  // The text form: score line, one row per component, the top tokens.
  const text = (await ok(['classify', '-'], c.spamRaw)).stdout;
  assert.match(text, /^score [01]\.\d{4}, verdict (junk|reject) \(junk ≥ 0\.3, reject > 0\.8\); stacked combination; model version 1 \+ 0 learns;/);
  assert.match(text, /^\| bayes +\| [01]\.\d{4} +\| yes +\| -?\d+\.\d{3} +\|$/m);
  assert.match(text, /^bayes topSpam: /m);

  // learn: learned, then a duplicate; the hash is the message's SHA-256.
  const hash = createHash('sha256').update(c.spamRaw).digest('hex');
  assert.equal((await ok(['learn', 'spam'], c.spamRaw)).stdout, `learned ${hash} (event 1)\n`);
  assert.equal((await ok(['learn', 'spam'], c.spamRaw)).stdout, `duplicate ${hash}\n`);
  assert.equal((await ok(['learn', 'ham', '--user', 'alice'], c.spamRaw)).stdout, `learned ${hash} (event 2 for user alice)\n`);
  assert.deepEqual((await classify(c.spamFile)).model, { version: 1, lastEventId: '2', learnsApplied: 1 });

  // export → verify → import, and the file classifies without PostgreSQL.
  const file = path.join(dir, 'model.ceermodl');
  assert.match((await ok(['model', 'export', '--out', file])).stdout, /^exported the active version to .* sha256 [0-9a-f]{64}\)$/m);
  const verified = await ok(['model', 'verify', file]);
  assert.match(verified.stdout, /: ok \(.*format 1\)/);
  assert.match(verified.stdout, /^\| bayes +\| \d+ +\| [0-9a-f]{64} \|$/m);
  assert.match((await ok(['model', 'verify', '1'])).stdout, /^version 1: ok/);
  assert.match((await ok(['model', 'import', file, '--note', 'copy'])).stdout, /^imported .* as version 2 \(ceerion model activate 2 to use it\)$/m);
  const offline = await ceerion(['classify', c.spamFile, '--json', '--model', file], { CEERION_DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/postgres` });
  assert.equal(offline.code, 0, offline.stderr);
  assert.deepEqual(JSON.parse(offline.stdout).model, { file });

  let versions = JSON.parse((await ok(['model', 'list', '--json'])).stdout) as Array<{ version: number; active: boolean; note: string }>;
  assert.deepEqual(versions.map((v) => [v.version, v.active, v.note]), [[2, false, 'copy'], [1, true, 'cli test']]);
  assert.match((await ok(['model', 'activate', '2'])).stdout, /^version 2 is active/);

  // An import is taken as complete (it includes every learn so far): nothing to compact yet.
  assert.match((await ok(['model', 'compact'])).stdout, /^nothing to compact: version 2 already includes every learn$/m);
  // compact: the active model plus the learns after it become version 3; the events go.
  assert.match((await ok(['learn', 'ham'], readFileSync(c.hamFile))).stdout, /^learned [0-9a-f]{64} \(event 3\)$/m);
  const compacted = await ok(['model', 'compact']);
  assert.match(compacted.stdout, /^saved version 3 \(active, .*\): version 2 \+ 1 learns, through event 3; deleted 3 events it includes$/m);
  versions = JSON.parse((await ok(['model', 'list', '--json'])).stdout);
  assert.deepEqual(versions.map((v) => [v.version, v.active]), [[3, true], [2, false], [1, false]]);
  assert.match((await ok(['model', 'compact'])).stdout, /^nothing to compact: version 3 already includes every learn$/m);

  // A damaged file: every problem listed, exit 1.
  writeFileSync(file, Buffer.concat([Buffer.from('CEERMODL'), Buffer.alloc(80)]));
  const bad = await cli(['model', 'verify', file]);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /DAMAGED/);
  assert.match(bad.stderr, /is damaged \(\d+ problems?\)/);
  assert.equal((await cli(['model', 'import', file])).code, 1);
});

test('train --out writes a model file and leaves PostgreSQL alone', async (t) => {
  const { dir } = setup(t);
  const c = await writeCorpus(dir, 25);
  const out = path.join(dir, 'out.model');
  // An unreachable database: --out must not need one.
  const env = { CEERION_DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/postgres` };
  const r = await ceerion(['train', '--spam', c.maildir, '--ham', c.hamDir, '--out', out], env);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^wrote .*out\.model \(.*sha256 [0-9a-f]{64}\)$/m);
  const v = await ceerion(['model', 'verify', out], env);
  assert.equal(v.code, 0, v.stderr);
});

test('usage errors exit 2 before any work; an unreachable database exits 1 without the password', async (t) => {
  const { dir } = setup(t);
  const port = await freePort();
  const env = { CEERION_DATABASE_URL: `postgres://postgres:hunter2@127.0.0.1:${port}/postgres` };
  const cases: Array<[string[], RegExp]> = [
    [['learn', 'eggs'], /the class is spam or ham, not "eggs"/],
    [['learn', 'spam'], /the message on stdin is empty/],
    [['learn', 'spam', '--user', 'a b'], /--user must be/],
    [['train', '--ham', dir], /--spam PATH is required/],
    [['train', '--spam', path.join(dir, 'nope'), '--ham', dir], /--spam .*nope: no such file or directory/],
    [['classify', path.join(dir, 'nope.eml')], /no such file/],
    [['classify'], /missing required argument/],
    [['eval', '--folds', '1'], /--folds: "1" is not a whole number/],
    [['model', 'activate', 'latest'], /"latest" is not a model version/],
    [['model', 'export'], /--out FILE is required/],
    [['model', 'verify', 'nope'], /nope: no such file, and not a model version/],
    [['model', 'frobnicate'], /unknown command/],
  ];
  const runs = await Promise.all(cases.map(([args]) => ceerion(args, env)));
  cases.forEach(([args, message], i) => {
    assert.equal(runs[i]!.code, 2, `${args.join(' ')}: ${runs[i]!.stderr}`);
    assert.match(runs[i]!.stderr, message);
  });

  const down = await ceerion(['model', 'list'], env);
  assert.equal(down.code, 1);
  assert.match(down.stderr, new RegExp(`^ceerion model list: cannot use PostgreSQL at postgres://postgres:\\*\\*\\*@127\\.0\\.0\\.1:${port}/postgres \\(schema ceerion\\): connect ECONNREFUSED`));
  const msg = Buffer.from('Subject: hi\r\n\r\nhello\r\n');
  const learn = await ceerion(['learn', 'ham'], env, msg);
  assert.equal(learn.code, 1);
  assert.doesNotMatch(learn.stderr, /hunter2/);
});
