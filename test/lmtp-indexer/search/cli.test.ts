/**
 * `ceerion search` and `ceerion token` through the functions their actions call, against real
 * PostgreSQL (the commander wiring around them is a few lines in cli/search.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CLI_MAX_PAGE, CliFailure, formatPage, runSearch, runTokenCreate, runTokenRevoke, userArg } from '../../../cli/search.ts';
import { loadConfig } from '../../../core/config/load.ts';
import { verifyToken } from '../../../lmtp-indexer/auth/tokens.ts';
import type { SearchPage } from '../../../lmtp-indexer/search/service.ts';
import { ALICE, BOB, indexDb, insertMail } from './fixtures.ts';

const config = loadConfig({ overrides: {} });

test('search: a table of the account\'s matches, or JSON', async (t) => {
  const pool = await indexDb(t);
  const id = await insertMail(pool, {
    subject: 'Invoice 2024-05', body: 'amount due', fromAddress: 'billing@acme.example', fromName: 'Acme', hasAttachment: true,
    receivedAt: '2024-05-06T07:08:09Z', mailbox: 'Archive',
  });
  await insertMail(pool, { account: BOB, subject: 'Invoice 2024-05' });
  const { stdout, stderr } = await runSearch(pool, config, ALICE, 'invoice', {});
  const lines = stdout.trimEnd().split('\n');
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /^\| date \(UTC\) +\| from +\| subject +\| mailbox +\| marks +\| score +\| id +\|$/);
  assert.match(lines[2]!, new RegExp(`^\\| 2024-05-06 07:08 \\| Acme <billing@acme.example> \\| Invoice 2024-05 \\| Archive \\| unread attachment \\| 0\\.\\d{4} \\| ${id} +\\|$`));
  assert.equal(stderr, '');
  const json = JSON.parse((await runSearch(pool, config, ALICE, 'invoice', { json: true })).stdout) as SearchPage;
  assert.deepEqual(json.hits.map((h) => h.id), [id]);
  assert.equal((await runSearch(pool, config, ALICE, 'nothing-matches-this', {})).stdout, 'no messages match\n');
});

test('search: --limit and --cursor page through, the cursor printed on stderr', async (t) => {
  const pool = await indexDb(t);
  const ids: number[] = [];
  for (let i = 0; i < 5; i++) ids.unshift(await insertMail(pool, { body: 'pageable' }));
  const first = await runSearch(pool, config, ALICE, '', { limit: '3', json: true });
  const page1 = JSON.parse(first.stdout) as SearchPage;
  assert.deepEqual(page1.hits.map((h) => h.id), ids.slice(0, 3));
  const table = await runSearch(pool, config, ALICE, '', { limit: '3' });
  assert.equal(table.stderr, `more results: add --cursor ${page1.nextCursor}\n`);
  const page2 = JSON.parse((await runSearch(pool, config, ALICE, '', { limit: '3', cursor: page1.nextCursor!, json: true })).stdout) as SearchPage;
  assert.deepEqual([page2.hits.map((h) => h.id), page2.nextCursor], [ids.slice(3), null]);
});

test('search: usage errors exit 2 with the reason', async (t) => {
  const pool = await indexDb(t);
  const usage = async (p: Promise<unknown>, message: RegExp) =>
    assert.rejects(p, (err: unknown) => err instanceof CliFailure && err.code === 2 && message.test(err.message));
  await usage(runSearch(pool, config, ALICE, 'has:pdf', {}), /has: expects attachment/);
  await usage(runSearch(pool, config, ALICE, '', { limit: 'ten' }), /--limit: expected a whole number from 1 to 1000/);
  await usage(runSearch(pool, config, ALICE, '', { limit: '0' }), /--limit/);
  await usage(runSearch(pool, config, ALICE, '', { cursor: 'nope' }), /cursor is not one this server issued/);
  assert.throws(() => userArg('not-an-address'), (err: unknown) => err instanceof CliFailure && err.code === 2);
  assert.equal(userArg(' Alice@Example.COM '), ALICE);
  assert.equal(CLI_MAX_PAGE, 1000);
});

test('token create prints a token that verifies as the account; revoke ends it', async (t) => {
  const pool = await indexDb(t);
  const created = await runTokenCreate(pool, ALICE, 'laptop');
  const token = created.stdout.trim();
  assert.match(token, /^ceer_[A-Za-z0-9_-]{43}$/);
  // No accounts row: the token is made, with a warning.
  assert.match(created.stderr, /warning: alice@example.com is not an enabled account/);
  assert.equal(await verifyToken(pool, token), ALICE);
  const { rows } = await pool.query('SELECT label FROM api_tokens WHERE account = $1', [ALICE]);
  assert.deepEqual(rows, [{ label: 'laptop' }]);
  const second = (await runTokenCreate(pool, ALICE, undefined)).stdout.trim();
  assert.notEqual(second, token);
  assert.deepEqual(await runTokenRevoke(pool, ALICE), { stdout: 'revoked 2 tokens of alice@example.com\n', stderr: '' });
  assert.equal(await verifyToken(pool, token), undefined);
  assert.equal(await verifyToken(pool, second), undefined);
  assert.equal((await runTokenRevoke(pool, ALICE)).stdout, 'revoked 0 tokens of alice@example.com\n');
});

test('formatPage: long fields are cut, marks and missing values shown', () => {
  const page: SearchPage = {
    order: 'date',
    nextCursor: null,
    hits: [{
      id: 9, subject: null, from: { address: null, name: null }, to: [], cc: [], date: '2024-01-02T03:04:05.000000Z', sentAt: null, size: 1,
      snippet: '', hasAttachment: false, mailbox: null, uid: null, flags: ['\\Seen', '\\Flagged'], score: null,
    }, {
      id: 10, subject: 's'.repeat(80), from: { address: 'a@b.c', name: null }, to: [], cc: [], date: '2024-01-02T03:04:05.000000Z', sentAt: null,
      size: 1, snippet: '', hasAttachment: false, mailbox: 'INBOX', uid: 1, flags: [], score: null,
    }],
  };
  const { stdout } = formatPage(page, false);
  assert.match(stdout, /\| 2024-01-02 03:04 \| +\| \(no subject\) +\| - +\| flagged +\| +\| 9 +\|/);
  assert.match(stdout, new RegExp(`\\| a@b\\.c +\\| ${'s'.repeat(59)}… \\| INBOX +\\| unread +\\|`));
});
