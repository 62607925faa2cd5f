/**
 * Move latency with the learn hook: one IMAP `MOVE 1:* Junk` of --messages messages (default
 * 1,000) in a private Dovecot, per configuration, --runs times each (fresh user, fresh messages;
 * configurations interleaved), median reported:
 *   plain      the same Dovecot without IMAPSieve (the baseline)
 *   noop       IMAPSieve with a script that does nothing (what IMAPSieve itself costs)
 *   gateway    the shipped imapsieve-learn.conf, `ceerion learner` on the socket (the default)
 *   program    the same with no learner running: Dovecot forks the spooling program per message
 * Target: gateway ≤ 1.2 × plain, and every message learned within 10 s after the MOVE returns.
 *
 *   node --import tsx bench/dovecot/move.ts [--messages 1000] [--runs 3]
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ImapFlow } from 'imapflow';
import { migrateClassifier } from '../../classifier/model/store.ts';
import { configSchema } from '../../core/config/schema.ts';
import { createPool } from '../../core/db/pool.ts';
import { silentLogger } from '../../core/log.ts';
import { ensureSpool } from '../../dovecot-plugins/learn/spool.ts';
import { startLearnerService } from '../../dovecot-plugins/learn/service.ts';
import { startDovecot, type DovecotInstance } from '../../test/harness/dovecot.ts';
import { uidOf } from '../../test/harness/dovecot-config.ts';
import { dropSchema, SHARED_DATABASE_URL } from '../../test/harness/postgres.ts';
import { table } from '../lib/stats.ts';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: number) => Number(argv[argv.indexOf(`--${name}`) + 1] || 0) || dflt;
const MESSAGES = opt('messages', 1000);
const RUNS = opt('runs', 3);
const MODES = ['plain', 'noop', 'gateway', 'program'] as const;
type Mode = (typeof MODES)[number];

const WORDS = 'cheap offer pills money free winner click now meeting invoice project report lunch weekend family photos travel deal urgent account'.split(' ');
const nobody = uidOf('nobody');
const users = Array.from({ length: RUNS * MODES.length }, (_, i) => ({ name: `u${i}`, password: 'pw' }));

const work = await mkdtemp(path.join(os.tmpdir(), 'ceerion-bench-move-'));
await chmod(work, 0o755);
const spoolDir = path.join(work, 'spool');
await ensureSpool(spoolDir);
const noopDir = path.join(work, 'noop');
await mkdir(noopDir);
await writeFile(path.join(noopDir, 'noop.sieve'), 'require ["imapsieve"];\nkeep;\n');
await chown(noopDir, nobody.uid, nobody.gid);
await chown(path.join(noopDir, 'noop.sieve'), nobody.uid, nobody.gid);
const noopConfig = [
  'protocol imap {', '  mail_plugins = $mail_plugins imap_sieve', '}',
  'plugin {', '  sieve_plugins = sieve_imapsieve', '  imapsieve_mailbox1_name = Junk', '  imapsieve_mailbox1_causes = COPY',
  `  imapsieve_mailbox1_before = file:${noopDir}/noop.sieve`, '}',
].join('\n');
const junk = 'namespace inbox {\n  inbox = yes\n  mailbox Junk {\n    auto = create\n  }\n}\n';

const dovecots: Record<'plain' | 'noop' | 'learn', DovecotInstance> = {
  plain: await startDovecot({ users, extraConfig: junk }),
  noop: await startDovecot({ users, extraConfig: junk + noopConfig }),
  learn: await startDovecot({ users, learn: { spoolDir }, sieveDelivery: true }),
};

const schema = `bench_move_${process.pid}`;
const database = { url: SHARED_DATABASE_URL, schema };
const pool = createPool(database);
await migrateClassifier(pool);
const prefix = `ceerion-bench-${randomBytes(4).toString('hex')}:`;
const config = configSchema.parse({
  redis: { keyPrefix: prefix },
  database,
  learn: { gateway: { socket: dovecots.learn.learnSocket }, spool: { dir: spoolDir, scanIntervalMs: 200 } },
});

async function fill(dc: DovecotInstance, user: string): Promise<void> {
  const cur = path.join(dc.mailRoot, user, 'Maildir', 'cur');
  await mkdir(cur, { recursive: true });
  for (let i = 0; i < MESSAGES; i++) {
    const words = Array.from({ length: 60 }, (_, k) => WORDS[(i * 7 + k * 13) % WORDS.length]).join(' ');
    const body = `Message ${user}-${i} ${randomBytes(8).toString('hex')}\r\n${words}\r\n`.repeat(8);
    const raw = `From: Sender ${i} <s${i}@example.net>\r\nTo: ${user}@example.com\r\nSubject: note ${i} ${WORDS[i % WORDS.length]}\r\nMessage-ID: <${user}.${i}@bench>\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n\r\n${body}`;
    await writeFile(path.join(cur, `${1_700_000_000 + i}.M${i}P1.bench:2,`), raw);
  }
  execFileSync('chown', ['-R', `${nobody.uid}:${nobody.gid}`, path.join(dc.mailRoot, user)]);
}

async function learnedCount(): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM classifier_learned');
  return Number(rows[0]!.n);
}

const results: Record<Mode, number[]> = { plain: [], noop: [], gateway: [], program: [] };
const drain: number[] = [];
let userIndex = 0;
for (let run = 0; run < RUNS; run++) {
  for (const mode of MODES) {
    const dc = mode === 'plain' ? dovecots.plain : mode === 'noop' ? dovecots.noop : dovecots.learn;
    const user = users[userIndex++]!.name;
    await fill(dc, user);
    const learner = mode === 'gateway' ? await startLearnerService(config, { log: silentLogger }) : undefined;
    const imap = new ImapFlow({ host: '127.0.0.1', port: dc.imapPort, secure: false, auth: { user, pass: 'pw' }, logger: false });
    await imap.connect();
    const lock = await imap.getMailboxLock('INBOX');
    // The first SELECT indexes the new maildir; time only the MOVE.
    const before = await learnedCount();
    const start = performance.now();
    await imap.messageMove('1:*', 'Junk');
    const ms = performance.now() - start;
    lock.release();
    await imap.logout();
    results[mode].push(ms);
    if (learner) {
      const t0 = performance.now();
      while ((await learnedCount()) - before < MESSAGES && performance.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 50));
      drain.push(performance.now() - t0);
      await learner.stop();
    }
    if (mode === 'program') await rm(path.join(spoolDir, 'new'), { recursive: true }).then(() => ensureSpool(spoolDir));
    process.stderr.write(`run ${run + 1} ${mode}: ${ms.toFixed(0)} ms\n`);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const base = median(results.plain);
process.stdout.write(
  `\nIMAP MOVE of ${MESSAGES} messages into Junk (median of ${RUNS}; Dovecot ${execFileSync('dovecot', ['--version']).toString().trim()})\n\n` +
    table(
      ['configuration', 'MOVE ms', 'per message µs', 'vs plain'],
      MODES.map((m) => [m, median(results[m]).toFixed(0), ((median(results[m]) * 1000) / MESSAGES).toFixed(0), `${(median(results[m]) / base).toFixed(2)}×`]),
    ) +
    `\n\nall ${MESSAGES} learned (gateway) within: median ${(median(drain) / 1000).toFixed(2)} s after the MOVE returned (target ≤ 10 s)\n`,
);

for (const dc of Object.values(dovecots)) await dc.stop();
await pool.end();
await dropSchema(SHARED_DATABASE_URL, schema);
await rm(work, { recursive: true, force: true });
const { Redis } = await import('ioredis');
const r = new Redis();
const keys = await r.keys(`${prefix}*`);
if (keys.length) await r.del(...keys);
r.disconnect();
