// Spool files and queue entries: the formats learn jobs have at rest. The spool format is also
// what dovecot-plugins/bin/ceerion-learn writes, so the real program is run here too.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test from 'node:test';
import fc from 'fast-check';
import { decodeEntry, encodeEntry, encodeSpoolFile, LearnJobError, parseSpoolFile, type LearnJob } from '../../../dovecot-plugins/learn/job.ts';
import { ensureSpool } from '../../../dovecot-plugins/learn/spool.ts';
import { fillPlaceholders } from '../../harness/dovecot-config.ts';

const user = fc.fullUnicodeString({ minLength: 1, maxLength: 40 }).filter((u) => /^[^\s\p{Cc}]+$/u.test(u));

test('spool files round trip; anything else is a LearnJobError', () => {
  fc.assert(
    fc.property(fc.constantFrom('spam' as const, 'ham' as const), user, fc.uint8Array({ maxLength: 300 }), (cls, u, msg) => {
      const back = parseSpoolFile(encodeSpoolFile({ cls, user: u, message: Buffer.from(msg) }));
      assert.deepEqual({ ...back, message: [...back.message] }, { cls, user: u, message: [...msg] });
    }),
    { numRuns: 3_000 },
  );
  fc.assert(
    fc.property(fc.constantFrom('', 'CEERION-LEARN 1\n', 'CEERION-LEARN 1\nclass: spam\n'), fc.uint8Array({ maxLength: 300 }), (p, tail) => {
      try {
        parseSpoolFile(Buffer.concat([Buffer.from(p), tail]));
      } catch (err) {
        assert.ok(err instanceof LearnJobError, String(err));
      }
    }),
    { numRuns: 10_000 },
  );
  assert.throws(() => parseSpoolFile(Buffer.from('CEERION-LEARN 1\nclass: eggs\nuser: a\n\nx')), /spam or ham/);
  assert.throws(() => parseSpoolFile(Buffer.from('CEERION-LEARN 1\nclass: spam\nuser: a b\n\nx')), /spaces or control/);
  assert.throws(() => parseSpoolFile(Buffer.from('CEERION-LEARN 1\nclass: spam\nclass: ham\nuser: a\n\nx')), /twice/);
});

test('queue entries round trip; malformed ones are a LearnJobError', () => {
  fc.assert(
    fc.property(fc.constantFrom('spam' as const, 'ham' as const), user, fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.constantFrom('pipe' as const, 'spool' as const), (cls, u, msg, source) => {
      const job: LearnJob = { cls, user: u, message: Buffer.from(msg), source, receivedAt: 1_700_000_000_000 };
      const fields = encodeEntry(job).map((f) => (Buffer.isBuffer(f) ? f : Buffer.from(f)));
      assert.deepEqual(decodeEntry(fields), job);
    }),
    { numRuns: 2_000 },
  );
  assert.throws(() => decodeEntry([Buffer.from('v'), Buffer.from('2')]), LearnJobError);
  assert.throws(() => decodeEntry([Buffer.from('v'), Buffer.from('1'), Buffer.from('cls'), Buffer.from('spam')]), /no message/);
});

test('the shipped ceerion-learn program spools what Dovecot pipes, cuts oversized messages, and always exits 0', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-learn-prog-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const spool = path.join(dir, 'spool');
  await ensureSpool(spool);
  const template = await readFile(path.join(import.meta.dirname, '../../../dovecot-plugins/bin/ceerion-learn'), 'utf8');
  const program = path.join(dir, 'ceerion-learn');
  await writeFile(program, fillPlaceholders(program, template, { SPOOL_DIR: spool, MAX_BYTES: '100' }), { mode: 0o755 });
  const pipe = (args: string[], input: string, env: Record<string, string>) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = execFile(program, args, { env }, (err, _out, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }));
      child.stdin!.end(input);
    });
  assert.deepEqual(await pipe(['spam'], 'Subject: hi\r\n\r\nbody\r\n', { USER: 'jürgen+x$y@exämple.com', PATH: process.env.PATH! }), { code: 0, stderr: '' });
  assert.equal((await pipe(['ham'], `Subject: big\r\n\r\n${'x'.repeat(5000)}`, { USER: 'bob', PATH: process.env.PATH! })).code, 0);
  const refused = await pipe(['eggs'], 'x', { USER: 'bob', PATH: process.env.PATH! });
  assert.equal(refused.code, 0);
  assert.match(refused.stderr, /spam or ham/);
  const noUser = await pipe(['spam'], 'x', { PATH: process.env.PATH! });
  assert.equal(noUser.code, 0);
  assert.match(noUser.stderr, /no usable USER/);
  const files = (await readdir(path.join(spool, 'new'))).sort();
  assert.equal(files.length, 2);
  const jobs = await Promise.all(files.map(async (f) => parseSpoolFile(await readFile(path.join(spool, 'new', f)))));
  const spam = jobs.find((j) => j.cls === 'spam')!;
  assert.equal(spam.user, 'jürgen+x$y@exämple.com');
  assert.equal(spam.message.toString(), 'Subject: hi\r\n\r\nbody\r\n');
  assert.equal(jobs.find((j) => j.cls === 'ham')!.message.length, 101, 'cut at MAX_BYTES + 1, so the importer knows it was too large');
  assert.deepEqual(await readdir(path.join(spool, 'tmp')), [], 'nothing left half-written');
  // Spool not writable: still exit 0, with the reason.
  await rm(spool, { recursive: true });
  const broken = await pipe(['spam'], 'x', { USER: 'bob', PATH: process.env.PATH! });
  assert.equal(broken.code, 0);
  assert.match(broken.stderr, /cannot write/);
});
