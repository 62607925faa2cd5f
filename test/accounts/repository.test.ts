// accounts/repository.ts, aliases.ts and remove.ts against the real PostgreSQL, one schema per test.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import type pg from 'pg';
import { InvalidAddressError } from '../../accounts/address.ts';
import { addAlias, AliasExistsError, listAliases, NoSuchAliasError, removeAlias } from '../../accounts/aliases.ts';
import { removeAccount } from '../../accounts/remove.ts';
import {
  accountExists,
  AccountExistsError,
  createAccount,
  getAccount,
  insertAccount,
  listAccounts,
  migrateAccounts,
  NoSuchAccountError,
  setEnabled,
  setPassword,
  setQuotaRule,
} from '../../accounts/repository.ts';
import { createPool } from '../../core/db/pool.ts';
import { createToken, verifyToken } from '../../lmtp-indexer/auth/tokens.ts';
import { migrateIndex } from '../../lmtp-indexer/index/schema.ts';
import { testSchema } from '../harness/postgres.ts';

const HASH = '{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g';
const BLF = '{BLF-CRYPT}$2y$12$abcdefghijklmnopqrstuu5s2v8.ghCCGOwZ0B4yJgKX2IKAa4HTK';

async function accountsPool(t: TestContext, migrate: (pool: pg.Pool) => Promise<unknown> = migrateAccounts): Promise<pg.Pool> {
  const pool = createPool(testSchema(t));
  t.after(() => pool.end());
  await migrate(pool);
  return pool;
}

test('migrations: 0001 and the lookup indexes of 0002, once', async (t) => {
  const pool = createPool(testSchema(t));
  t.after(() => pool.end());
  assert.deepEqual(
    (await migrateAccounts(pool)).map((m) => `${m.version} ${m.name}`),
    ['1 accounts', '2 lookup_indexes'],
  );
  assert.deepEqual(await migrateAccounts(pool), []);
  const { rows } = await pool.query<{ indexname: string }>("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() ORDER BY indexname");
  for (const name of ['accounts_domain', 'aliases_destination', 'aliases_source_domain']) assert.ok(rows.some((r) => r.indexname === name), name);
});

test('createAccount: validated, lower-cased, unique whatever the case; insertAccount still takes any hash', async (t) => {
  const pool = await accountsPool(t);
  await createAccount(pool, { address: 'Alice@Example.com', passwordHash: HASH, quotaRule: '*:storage=2G' });
  await assert.rejects(createAccount(pool, { address: 'ALICE@example.com', passwordHash: HASH }), (err: Error) => err instanceof AccountExistsError && err.message === 'alice@example.com already exists');
  await assert.rejects(createAccount(pool, { address: 'bad+tag@example.com', passwordHash: HASH }), InvalidAddressError);
  assert.equal(await accountExists(pool, 'alice@EXAMPLE.com'), true);
  const alice = await getAccount(pool, 'alice@example.com');
  assert.equal(alice?.quotaRule, '*:storage=2G');
  assert.equal(alice?.scheme, 'ARGON2ID');
  assert.equal(alice?.enabled, true);
  assert.equal(await getAccount(pool, 'nobody@example.com'), undefined);
  // The older entry point, as the LMTP tests use it.
  const id = await insertAccount(pool, { address: 'lmtp@example.test', passwordHash: '{PLAIN}x' });
  assert.ok(id > 0);
  await assert.rejects(insertAccount(pool, { address: 'LMTP@example.test', passwordHash: '{PLAIN}x' }), AccountExistsError);
});

test('setPassword, setQuotaRule, setEnabled: change one account; NoSuchAccountError for an unknown one', async (t) => {
  const pool = await accountsPool(t);
  await createAccount(pool, { address: 'alice@example.com', passwordHash: HASH });
  await createAccount(pool, { address: 'bob@example.com', passwordHash: HASH });
  await setPassword(pool, 'Alice@example.com', BLF);
  await setQuotaRule(pool, 'alice@example.com', '*:storage=500M');
  await setEnabled(pool, 'alice@example.com', false);
  const alice = await getAccount(pool, 'alice@example.com');
  assert.deepEqual([alice?.scheme, alice?.quotaRule, alice?.enabled], ['BLF-CRYPT', '*:storage=500M', false]);
  assert.equal(await accountExists(pool, 'alice@example.com'), false, 'a disabled account does not receive');
  const bob = await getAccount(pool, 'bob@example.com');
  assert.deepEqual([bob?.scheme, bob?.quotaRule, bob?.enabled], ['ARGON2ID', null, true]);
  await setQuotaRule(pool, 'alice@example.com', null);
  assert.equal((await getAccount(pool, 'alice@example.com'))?.quotaRule, null);
  for (const change of [() => setPassword(pool, 'nobody@example.com', HASH), () => setQuotaRule(pool, 'nobody@example.com', null), () => setEnabled(pool, 'nobody@example.com', true)]) {
    await assert.rejects(change(), (err: Error) => err instanceof NoSuchAccountError && err.message === 'there is no account nobody@example.com');
  }
});

test('aliases: add, list with what each delivers to, refuse repeats and bad addresses, remove', async (t) => {
  const pool = await accountsPool(t);
  await createAccount(pool, { address: 'alice@example.com', passwordHash: HASH });
  await createAccount(pool, { address: 'gone@example.com', passwordHash: HASH, enabled: false });
  assert.deepEqual(await addAlias(pool, 'Sales@Example.com', 'alice@example.com'), { source: 'sales@example.com', destination: 'alice@example.com', kind: 'account', sourceIsAccount: false });
  assert.equal((await addAlias(pool, 'sales@example.com', 'bob@other.org')).kind, 'external');
  assert.equal((await addAlias(pool, '@example.com', 'alice@example.com')).kind, 'account');
  assert.equal((await addAlias(pool, 'old@example.com', 'gone@example.com')).kind, 'disabled');
  assert.equal((await addAlias(pool, 'team@example.com', 'sales@example.com')).kind, 'alias');
  assert.equal((await addAlias(pool, 'typo@example.com', 'alcie@example.com')).kind, 'unknown');
  assert.equal((await addAlias(pool, 'alice@example.com', 'alice@example.com')).sourceIsAccount, true);
  await assert.rejects(addAlias(pool, 'SALES@example.com', 'Alice@Example.com'), (err: Error) => err instanceof AliasExistsError && /sales@example\.com → alice@example\.com already exists/.test(err.message));
  await assert.rejects(addAlias(pool, 'x@example.com', '@example.com'), InvalidAddressError);
  await assert.rejects(addAlias(pool, 'x y@example.com', 'alice@example.com'), InvalidAddressError);

  assert.deepEqual(
    (await listAliases(pool)).map((a) => `${a.source} ${a.destination} ${a.kind}`),
    [
      '@example.com alice@example.com account',
      'alice@example.com alice@example.com account',
      'old@example.com gone@example.com disabled',
      'sales@example.com alice@example.com account',
      'sales@example.com bob@other.org external',
      'team@example.com sales@example.com alias',
      'typo@example.com alcie@example.com unknown',
    ],
  );
  await addAlias(pool, 'info@other.net', 'alice@example.com');
  assert.deepEqual((await listAliases(pool, { domain: 'other.net' })).map((a) => a.source), ['info@other.net']);
  assert.deepEqual((await listAliases(pool, { domain: '@Other.NET' })).map((a) => a.source), ['info@other.net']);

  await removeAlias(pool, 'Sales@example.com', 'bob@other.org');
  await assert.rejects(removeAlias(pool, 'sales@example.com', 'bob@other.org'), NoSuchAliasError);
  assert.equal((await listAliases(pool)).filter((a) => a.source === 'sales@example.com').length, 1);
});

test('listAccounts: by domain then address, with quota, state, scheme and the aliases delivering to each', async (t) => {
  const pool = await accountsPool(t);
  assert.deepEqual(await listAccounts(pool), []);
  await createAccount(pool, { address: 'zed@a.example', passwordHash: HASH });
  await createAccount(pool, { address: 'bob@b.example', passwordHash: BLF, quotaRule: '*:storage=1G', enabled: false });
  await createAccount(pool, { address: 'alice@b.example', passwordHash: HASH });
  await addAlias(pool, 'sales@b.example', 'alice@b.example');
  await addAlias(pool, '@b.example', 'alice@b.example');
  await addAlias(pool, 'alice@b.example', 'zed@a.example');
  const list = await listAccounts(pool);
  assert.deepEqual(
    list.map((a) => [a.address, a.enabled, a.quotaRule, a.scheme, a.aliases]),
    [
      ['zed@a.example', true, null, 'ARGON2ID', 1],
      ['alice@b.example', true, null, 'ARGON2ID', 2],
      ['bob@b.example', false, '*:storage=1G', 'BLF-CRYPT', 0],
    ],
  );
  assert.ok(list.every((a) => a.createdAt instanceof Date));
});

/** One indexed message with an event, a counter and a token for `account`, as the LMTP indexer writes them. */
async function indexRows(pool: pg.Pool, account: string): Promise<string> {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO indexed_messages (account, content_sha256, size_bytes, received_at, language, tsv)
     VALUES ($1, $2, 10, now(), 'simple', to_tsvector('simple', 'hello')) RETURNING id`,
    [account, randomBytes(32)],
  );
  await pool.query("INSERT INTO mail_event_counters (account, seq) VALUES ($1, 1)", [account]);
  await pool.query("INSERT INTO mail_events (account, seq, kind, message_row) VALUES ($1, 1, 'new', $2)", [account, rows[0]!.id]);
  return createToken(pool, account);
}

test('removeAccount: the row, aliases to and from it, and what the indexer holds for it; nothing of others', async (t) => {
  const pool = await accountsPool(t, migrateIndex);
  await createAccount(pool, { address: 'alice@example.com', passwordHash: HASH });
  await createAccount(pool, { address: 'bob@example.com', passwordHash: HASH });
  await addAlias(pool, 'sales@example.com', 'alice@example.com');
  await addAlias(pool, 'sales@example.com', 'bob@example.com');
  await addAlias(pool, 'alice@example.com', 'alice@elsewhere.org');
  const aliceToken = await indexRows(pool, 'alice@example.com');
  const bobToken = await indexRows(pool, 'bob@example.com');

  const removal = await removeAccount(pool, 'Alice@Example.com');
  assert.deepEqual(removal, {
    address: 'alice@example.com',
    aliases: [
      { source: 'alice@example.com', destination: 'alice@elsewhere.org' },
      { source: 'sales@example.com', destination: 'alice@example.com' },
    ],
    indexedMessages: 1,
    events: 1,
    tokens: 1,
  });
  assert.equal(await getAccount(pool, 'alice@example.com'), undefined);
  // A token of a removed account must not search its old mail, nor a new account's of that name.
  assert.equal(await verifyToken(pool, aliceToken), undefined);
  assert.equal(await verifyToken(pool, bobToken), 'bob@example.com');
  const count = async (table: string, account: string) => Number((await pool.query(`SELECT count(*) AS n FROM ${table} WHERE account = $1`, [account])).rows[0].n);
  for (const table of ['indexed_messages', 'mail_events', 'mail_event_counters', 'api_tokens']) {
    assert.equal(await count(table, 'alice@example.com'), 0, table);
    assert.equal(await count(table, 'bob@example.com'), 1, table);
  }
  assert.deepEqual((await listAliases(pool)).map((a) => `${a.source} ${a.destination}`), ['sales@example.com bob@example.com']);
  await assert.rejects(removeAccount(pool, 'alice@example.com'), NoSuchAccountError);
});

test('removeAccount: works without the indexer tables, and leaves nothing behind when it fails', async (t) => {
  const pool = await accountsPool(t);
  await createAccount(pool, { address: 'alice@example.com', passwordHash: HASH });
  await addAlias(pool, 'sales@example.com', 'alice@example.com');
  assert.deepEqual(await removeAccount(pool, 'alice@example.com'), {
    address: 'alice@example.com',
    aliases: [{ source: 'sales@example.com', destination: 'alice@example.com' }],
    indexedMessages: 0,
    events: 0,
    tokens: 0,
  });
  // Unknown: rolled back, the pool still works.
  await assert.rejects(removeAccount(pool, 'nobody@example.com'), NoSuchAccountError);
  assert.deepEqual(await listAccounts(pool), []);
});
