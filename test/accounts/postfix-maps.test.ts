// The shipped Postfix pgsql: maps (accounts/postfix/*.cf) rendered by accounts/postfix-maps.ts
// against a schema of their own: answered by Postfix's own pgsql client (postmap -q), planned as
// index lookups, and used by a private Postfix taking mail over SMTP.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import pg from 'pg';
import { addAlias } from '../../accounts/aliases.ts';
import { fillPlaceholders, mainCfLines, POSTFIX_MAPS, postfixMapValues, PostfixMapsError, writePostfixMaps } from '../../accounts/postfix-maps.ts';
import { createAccount, migrateAccounts } from '../../accounts/repository.ts';
import { createPool } from '../../core/db/pool.ts';
import { startPostfix } from '../harness/postfix.ts';
import { parseMainCf } from '../harness/postfix-config.ts';
import { testSchema } from '../harness/postgres.ts';
import { openSmtpSession } from '../harness/smtp-client.ts';
import { startSmtpSink } from '../harness/smtp-sink.ts';

const HASH = '{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g';

type MapName = 'domains' | 'mailboxes' | 'aliases';
const FILE_OF: Record<MapName, string> = {
  domains: 'pgsql-virtual-mailbox-domains.cf',
  mailboxes: 'pgsql-virtual-mailbox-maps.cf',
  aliases: 'pgsql-virtual-alias-maps.cf',
};

/**
 * A schema with the accounts and aliases every test here uses, the maps rendered for it, and
 * `postmap -q` against them (undefined: not found; a Postfix error throws).
 *   example.com: alice (enabled), gone (disabled), sales → alice + bob@other.org, @example.com → alice
 *   strict.org:  carol (enabled), old (disabled), no catch-all
 *   alias-only.net: info → carol@strict.org (a domain with aliases only)
 */
async function fixture(t: TestContext) {
  const db = testSchema(t);
  const pool = createPool(db);
  t.after(() => pool.end());
  await migrateAccounts(pool);
  for (const [address, enabled] of [
    ['alice@example.com', true],
    ['gone@example.com', false],
    ['carol@strict.org', true],
    ['old@strict.org', false],
  ] as const) {
    await createAccount(pool, { address, passwordHash: HASH, enabled });
  }
  for (const [source, destination] of [
    ['sales@example.com', 'alice@example.com'],
    ['sales@example.com', 'bob@other.org'],
    ['@example.com', 'alice@example.com'],
    ['info@alias-only.net', 'carol@strict.org'],
  ] as const) {
    await addAlias(pool, source, destination);
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-maps-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // Postfix daemons (user postfix) open the maps: they must reach into the temp dir.
  await chmod(dir, 0o755);
  const mapsDir = path.join(dir, 'maps');
  const written = await writePostfixMaps(mapsDir, db);
  const file = (map: MapName): string => path.join(mapsDir, FILE_OF[map]);
  // postmap reads main.cf; an otherwise empty one keeps /etc/postfix out of the test.
  const etc = path.join(dir, 'etc');
  await mkdir(etc);
  await writeFile(path.join(etc, 'main.cf'), 'compatibility_level = 3.6\n');
  const postmap = (map: MapName, key: string): Promise<string | undefined> =>
    new Promise((resolve, reject) => {
      execFile('postmap', ['-c', etc, '-q', key, `pgsql:${file(map)}`], { encoding: 'utf8', timeout: 20_000 }, (err, stdout, stderr) => {
        if (/fatal|warning/i.test(stderr)) return reject(new Error(`postmap -q ${key} ${map}: ${stderr}`));
        if (err && err.code !== 1) return reject(err);
        resolve(err ? undefined : stdout.trim());
      });
    });
  return { db, pool, dir, mapsDir, written, file, postmap };
}

test('postfixMapValues: libpq values from database.url, refusing what a map file cannot hold', () => {
  const schema = 'ceerion';
  assert.deepEqual(postfixMapValues({ url: 'postgres://mail:s3cr%23t%20x@db.example.net:6543/maildb', schema }), {
    PG_HOSTS: 'inet:db.example.net:6543',
    PG_USER: 'mail',
    PG_PASSWORD: 's3cr#t x',
    PG_DBNAME: 'maildb',
    PG_SCHEMA: 'ceerion',
  });
  assert.deepEqual(postfixMapValues({ url: 'postgresql://postgres@127.0.0.1/postgres', schema }), {
    PG_HOSTS: 'inet:127.0.0.1:5432',
    PG_USER: 'postgres',
    PG_PASSWORD: '',
    PG_DBNAME: 'postgres',
    PG_SCHEMA: 'ceerion',
  });
  assert.equal(postfixMapValues({ url: 'postgres://mail@localhost/maildb?host=/var/run/postgresql', schema }).PG_HOSTS, 'unix:/var/run/postgresql');
  for (const [url, message] of [
    ['postgres://mail@db/maildb?sslmode=require', /sslmode.*hosts = postgresql:\/\//],
    ['postgres://mail@[::1]/maildb', /IPv6/],
    ['postgres://mail:a%0Ab@db/maildb', /password contains a control character/],
    ['postgres://mail:%20pw@db/maildb', /password starts or ends with a blank/],
    ['postgres://mail@db/maildb?host=relative', /not a socket directory/],
    ['mysql://mail@db/maildb', /not a postgres/],
  ] as const) {
    assert.throws(() => postfixMapValues({ url, schema }), (err: Error) => err instanceof PostfixMapsError && message.test(err.message), url);
  }
  assert.throws(() => postfixMapValues({ url: 'postgres://db/x', schema: 'Bad-Name' }), /lower-case SQL identifier/);
});

test('fillPlaceholders: fills every line but comments, refuses an unknown placeholder, takes $ literally', () => {
  const text = '# @PG_HOSTS@ stays in a comment\nhosts = @PG_HOSTS@\npassword = @PG_PASSWORD@\n';
  assert.equal(fillPlaceholders('x.cf', text, { PG_HOSTS: 'inet:h:1', PG_PASSWORD: "$& $1 @PG_HOSTS@" }), "# @PG_HOSTS@ stays in a comment\nhosts = inet:h:1\npassword = $& $1 @PG_HOSTS@\n");
  assert.throws(() => fillPlaceholders('x.cf', text, { PG_HOSTS: 'h' }), /x\.cf: placeholder @PG_PASSWORD@ not substituted/);
});

test('writePostfixMaps: the three shipped files, filled, mode 0640, no placeholder left; the main.cf lines', async (t) => {
  const { written, mapsDir, db } = await fixture(t);
  assert.deepEqual(written.files.map((f) => path.basename(f)), POSTFIX_MAPS.map((m) => m.file));
  for (const file of written.files) {
    assert.equal((await stat(file)).mode & 0o777, 0o640, file);
    const text = await readFile(file, 'utf8');
    const settings = Object.fromEntries(parseMainCf(text));
    assert.deepEqual(Object.keys(settings).sort(), ['dbname', 'hosts', 'password', 'query', 'user']);
    assert.match(settings.query!, new RegExp(`FROM ${db.schema}\\.accounts|FROM ${db.schema}\\.aliases`));
    assert.doesNotMatch(text.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n'), /@[A-Z_]+@/);
  }
  assert.equal(written.groupPostfix, process.getuid?.() === 0);
  assert.equal(
    mainCfLines(mapsDir),
    `virtual_mailbox_domains = pgsql:${mapsDir}/pgsql-virtual-mailbox-domains.cf\n` +
      `virtual_mailbox_maps = pgsql:${mapsDir}/pgsql-virtual-mailbox-maps.cf\n` +
      `virtual_alias_maps = pgsql:${mapsDir}/pgsql-virtual-alias-maps.cf\n` +
      'recipient_delimiter = +\n',
  );
  // Written again over the old files: same result, nothing left behind.
  await writePostfixMaps(mapsDir, db);
  assert.deepEqual((await readdir(mapsDir)).sort(), POSTFIX_MAPS.map((m) => m.file).sort());
});

test('postmap -q: accounts, disabled accounts, aliases, catch-alls and domains as Postfix sees them', async (t) => {
  const { postmap, pool } = await fixture(t);
  // virtual_mailbox_maps: enabled accounts only; Postfix lower-cases the key itself.
  assert.equal(await postmap('mailboxes', 'alice@example.com'), 'alice@example.com');
  assert.equal(await postmap('mailboxes', 'Alice@Example.COM'), 'alice@example.com');
  assert.equal(await postmap('mailboxes', 'carol@strict.org'), 'carol@strict.org');
  assert.equal(await postmap('mailboxes', 'gone@example.com'), undefined, 'a disabled account has no mailbox');
  assert.equal(await postmap('mailboxes', 'nobody@example.com'), undefined);
  assert.equal(await postmap('mailboxes', 'sales@example.com'), undefined, 'an alias is not a mailbox');
  // A new account is there at once: Postfix's pgsql client caches nothing.
  await createAccount(pool, { address: 'new@example.com', passwordHash: HASH });
  assert.equal(await postmap('mailboxes', 'new@example.com'), 'new@example.com');

  // virtual_alias_maps: several destinations come back comma-separated.
  assert.deepEqual((await postmap('aliases', 'sales@example.com'))?.split(',').sort(), ['alice@example.com', 'bob@other.org']);
  assert.equal(await postmap('aliases', '@example.com'), 'alice@example.com', 'the catch-all');
  assert.equal(await postmap('aliases', 'info@alias-only.net'), 'carol@strict.org');
  // Enabled accounts answer with themselves so the catch-all never takes their mail. A disabled
  // one must not answer: smtpd would accept it at RCPT and the mail bounce later.
  assert.equal(await postmap('aliases', 'alice@example.com'), 'alice@example.com');
  assert.equal(await postmap('aliases', 'gone@example.com'), undefined);
  assert.equal(await postmap('aliases', 'nobody@example.com'), undefined, 'Postfix then asks for @example.com');
  // The raw +detail key matches nothing: Postfix strips the detail itself and asks again.
  assert.equal(await postmap('aliases', 'alice+news@example.com'), undefined);
  assert.equal(await postmap('aliases', "o'brien@example.com"), undefined, 'Postfix quotes %s');
  // An alias on an account's own address replaces the self-answer.
  await addAlias(pool, 'carol@strict.org', 'dave@other.org');
  assert.equal(await postmap('aliases', 'carol@strict.org'), 'dave@other.org');

  // virtual_mailbox_domains: any domain with an account (enabled or not) or an alias source.
  for (const domain of ['example.com', 'strict.org', 'alias-only.net', 'EXAMPLE.com']) assert.equal(await postmap('domains', domain), domain.toLowerCase(), domain);
  for (const domain of ['other.org', 'example', 'com', 'nowhere.test']) assert.equal(await postmap('domains', domain), undefined, domain);
});

test('every map query is an index lookup, never a scan', async (t) => {
  const { file, db } = await fixture(t);
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  t.after(() => client.end());
  await client.query('SET enable_seqscan = off');
  const keys: Record<MapName, string[]> = { domains: ['example.com'], mailboxes: ['alice@example.com'], aliases: ['sales@example.com', '@example.com'] };
  for (const map of Object.keys(keys) as MapName[]) {
    const query = Object.fromEntries(parseMainCf(await readFile(file(map), 'utf8'))).query!;
    for (const key of keys[map]) {
      const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${query.replaceAll("'%s'", `'${key}'`)}`);
      const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
      assert.doesNotMatch(plan, /Seq Scan/, `${map} ${key}:\n${plan}`);
      assert.match(plan, /Index (Only )?Scan/, `${map} ${key}:\n${plan}`);
    }
  }
});

test('a private Postfix with the maps: RCPT checks, alias and catch-all rewriting, +detail, disabled accounts', async (t) => {
  const { file } = await fixture(t);
  const sink = await startSmtpSink();
  t.after(() => sink.close());
  const postfix = await startPostfix({
    relayPort: sink.port,
    main: {
      virtual_mailbox_domains: `pgsql:${file('domains')}`,
      virtual_mailbox_maps: `pgsql:${file('mailboxes')}`,
      virtual_alias_maps: `pgsql:${file('aliases')}`,
      recipient_delimiter: '+',
      // The sink stands in for the LMTP indexer; it records the final recipients.
      virtual_transport: `smtp:[127.0.0.1]:${sink.port}`,
    },
  });
  t.after(() => postfix.stop());
  const session = await openSmtpSession(postfix.smtpPort);
  t.after(() => session.quit().catch(() => {}));
  let n = 0;
  const send = async (to: string) => {
    const id = `<m${++n}@test>`;
    const reply = await session.send({ from: 'sender@other.org', to: [to], data: `Message-ID: ${id}\nSubject: ${to}\n\nbody\n` });
    return { reply, id };
  };
  /** Sends to `to` and waits until the sink got the message for exactly `want`. */
  const delivered = async (to: string, want: string[]): Promise<void> => {
    const { reply, id } = await send(to);
    assert.equal(reply.code, 250, `${to}: ${reply.code} ${reply.text}`);
    let rcpts: string[] = [];
    for (let i = 0; i < 150; i++) {
      rcpts = sink.messages.filter((m) => m.data.includes(`Message-ID: ${id}`)).flatMap((m) => m.rcpts).sort();
      if (rcpts.length >= want.length) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(rcpts, want, `${to}\n${await postfix.log()}`);
  };
  const refused = async (to: string): Promise<string> => {
    const { reply } = await send(to);
    assert.equal(reply.code, 550, `${to}: ${reply.code} ${reply.text}`);
    return reply.text;
  };

  await delivered('alice@example.com', ['alice@example.com']);
  await delivered('Alice@EXAMPLE.com', ['alice@example.com']);
  // The detail survives to the mailbox (Dovecot files user+detail under user), catch-all or not.
  await delivered('alice+news@example.com', ['alice+news@example.com']);
  await delivered('sales@example.com', ['alice@example.com', 'bob@other.org']);
  await delivered('sales+q3@example.com', ['alice+q3@example.com', 'bob+q3@other.org']);
  await delivered('nobody@example.com', ['alice@example.com']); // the catch-all
  await delivered('nobody+x@example.com', ['alice@example.com']); // Postfix drops the detail on a catch-all
  await delivered('info@alias-only.net', ['carol@strict.org']);
  await delivered('carol@strict.org', ['carol@strict.org']);
  // No catch-all in strict.org: unknown and disabled addresses are refused at RCPT.
  assert.match(await refused('nobody@strict.org'), /User unknown in virtual mailbox table/);
  assert.match(await refused('old@strict.org'), /User unknown in virtual mailbox table/);
  // A disabled account in a domain with a catch-all: like any unknown address, the catch-all's.
  await delivered('gone@example.com', ['alice@example.com']);
});
