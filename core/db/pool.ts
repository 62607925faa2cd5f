/**
 * The one way the suite connects to PostgreSQL (policy service, LMTP indexer, accounts):
 * - every connection starts with `search_path = <database.schema>, public`, set as a startup
 *   parameter, so unqualified names mean the suite's tables and tests can use one schema each;
 * - the schema is created on the first connection if it is missing (no separate setup step);
 * - a connect timeout, so a black-holed server fails a request instead of hanging it;
 * - an `error` listener on the pool: an idle connection dropped by a restarting server must not
 *   crash the process (pg emits `error` on the pool, and an unhandled `error` event throws).
 */
import pg from 'pg';
import type { DatabaseConfig } from '../config/policyd.ts';
import type { Logger } from '../log.ts';

const { Pool, Client } = pg;
export type { Pool, PoolClient, Client } from 'pg';

export interface PoolOptions {
  log?: Logger;
  /** Most connections at once (pg's default is 10). */
  max?: number;
  /** Give up connecting after this long (default 5 s). */
  connectTimeoutMs?: number;
}

/** Same rule as databaseSchema.schema: the name goes into SQL and a startup option unquoted. */
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

function checkSchema(schema: string): string {
  if (!IDENTIFIER.test(schema)) throw new Error(`database.schema ${JSON.stringify(schema)} is not a lower-case SQL identifier`);
  return schema;
}

/** pg settings shared by pooled and dedicated connections. */
function connectionSettings(config: DatabaseConfig, connectTimeoutMs: number): pg.ClientConfig {
  const schema = checkSchema(config.schema);
  return {
    connectionString: config.url,
    // A startup parameter costs no round trip and holds for the whole session.
    options: `-c search_path=${schema},public`,
    connectionTimeoutMillis: connectTimeoutMs,
    // Notice a peer that vanished without closing (a LISTEN connection is otherwise silent forever).
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  };
}

/** A SQL identifier, double-quoted (for names read from the catalog or config, never user input into SQL). */
export const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/** `postgres://user:secret@host/db` → `postgres://user:***@host/db`, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/^(postgres(?:ql)?:\/\/[^:@/]*:)[^@/]*@/, '$1***@');
}

async function createSchema(client: pg.ClientBase, schema: string): Promise<void> {
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  } catch (err) {
    // Two first connections racing: IF NOT EXISTS is not atomic, the loser sees a duplicate.
    const code = (err as { code?: string }).code;
    if (code !== '23505' && code !== '42P06') throw err;
  }
}

export function createPool(config: DatabaseConfig, opts: PoolOptions = {}): pg.Pool {
  const schema = checkSchema(config.schema);
  let schemaReady = false;
  const pool = new Pool({
    ...connectionSettings(config, opts.connectTimeoutMs ?? 5_000),
    max: opts.max ?? 10,
    // Runs before the pool hands out a new connection; a failure fails that checkout.
    onConnect: async (client) => {
      if (schemaReady) return;
      await createSchema(client, schema);
      schemaReady = true;
    },
  });
  let down = false;
  pool.on('error', (err) => {
    if (!down) opts.log?.warn({ err: err.message, database: redactUrl(config.url) }, 'PostgreSQL connection lost');
    down = true;
  });
  pool.on('connect', () => {
    if (down) opts.log?.info({ database: redactUrl(config.url) }, 'PostgreSQL is back');
    down = false;
  });
  return pool;
}

/**
 * A connection of its own, outside the pool, for LISTEN: notifications arrive only on the session
 * that listens, and a pooled connection would be handed to other work. The caller must handle its
 * `error` and `end` events and end it.
 */
export async function connectDedicated(config: DatabaseConfig, opts: Pick<PoolOptions, 'connectTimeoutMs'> = {}): Promise<pg.Client> {
  const client = new Client(connectionSettings(config, opts.connectTimeoutMs ?? 5_000));
  // Until the caller attaches its own listener, an error while connecting must not go unhandled.
  const early = (): void => {};
  client.on('error', early);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    throw err;
  }
  client.off('error', early);
  return client;
}
