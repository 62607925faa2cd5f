/** A CLI environment bound to a fresh PostgreSQL schema, and ways to read back what it stored. */
import type { TestContext } from 'node:test';
import pg from 'pg';
import { testSchema } from '../harness/postgres.ts';
import { runOk } from './runbook.ts';

export function setup(t: TestContext) {
  const db = testSchema(t);
  const env = { CEERION_DATABASE_URL: db.url, CEERION_DATABASE_SCHEMA: db.schema, DOMAIN: 'example.org' };
  const show = async (domain: string) => {
    const r = await runOk('(test)', { line: 0, info: '', code: `ceerion policy show ${domain} --json` }, env);
    return JSON.parse(r.stdout) as { policy: { limits: Record<string, { count: number; periodSeconds: number }>; greylist: { enabled: boolean } }; row: { note: string | null } | null; from: { limits: Record<string, string> } };
  };
  const query = async (sql: string) => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      return (await client.query(sql.replaceAll('SCHEMA', db.schema))).rows;
    } finally {
      await client.end();
    }
  };
  return { env, show, query };
}

