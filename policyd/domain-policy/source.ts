/**
 * Where the policy service gets each domain's policy: `forDomain` answers from memory (it runs
 * for every SMTP transaction), and the memory follows PostgreSQL.
 *
 * - One dedicated connection LISTENs on `ceerion_policy`; any notification reloads the whole table
 *   (it is small, and a whole reload cannot drift), debounced so a burst of writes costs one load.
 *   LISTEN is issued before the load, so no change between the two can be missed. The channel is
 *   database-wide: installations in other schemas of the same database only cause extra reloads.
 * - PostgreSQL down: the last loaded policy stays in force (mail keeps flowing under the policy
 *   the admin last set), the outage is logged once, and the connection is retried with backoff;
 *   after reconnecting the table is reloaded, since notifications sent meanwhile are lost.
 * - If the very first load fails, the config defaults apply until a load succeeds.
 * - Each (re)connect runs the module's migrations first (a no-op once applied), so a service that
 *   started before the database existed needs no restart.
 */
import type pg from 'pg';
import type { DatabaseConfig, PolicydConfig } from '../../core/config/policyd.ts';
import { connectDedicated, redactUrl } from '../../core/db/pool.ts';
import type { Logger } from '../../core/log.ts';
import type { EffectivePolicy, PolicySource } from '../types.ts';
import { buildPolicyTable, configPolicy, type PolicyRow, type PolicyTable } from './merge.ts';
import { migratePolicyDomains } from './repository.ts';

export const POLICY_CHANNEL = 'ceerion_policy';

export interface PgPolicySourceOptions {
  pool: pg.Pool;
  config: { database: DatabaseConfig; policyd: Pick<PolicydConfig, 'limits' | 'greylist'> };
  log: Logger;
  /** Wait this long after a notification before reloading, to fold a burst into one load. */
  debounceMs?: number;
  /** Reconnect delays: doubling from the first to the most. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Run the migrations on each (re)connect (default true). */
  migrate?: boolean;
}

/** Normalise as Postfix may send it: any case, perhaps a trailing dot. */
const key = (domain: string): string => domain.toLowerCase().replace(/\.$/, '');

function lookup(table: PolicyTable, domain: string | undefined): EffectivePolicy {
  if (!domain) return table.fallback;
  return table.domains.get(key(domain)) ?? table.fallback;
}

/** `policyd.domainPolicy: false`: the config's limits and greylist for every domain. */
export class StaticPolicySource implements PolicySource {
  private readonly policy: EffectivePolicy;

  constructor(policyd: Pick<PolicydConfig, 'limits' | 'greylist'>) {
    this.policy = configPolicy(policyd);
  }

  forDomain(_domain: string | undefined): EffectivePolicy {
    return this.policy;
  }

  async close(): Promise<void> {}
}

export class PgPolicySource implements PolicySource {
  private table: PolicyTable;
  private readonly defaults: EffectivePolicy;
  private listener: pg.Client | undefined;
  private closed = false;
  private down = false;
  private retryMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private debounceTimer: NodeJS.Timeout | undefined;
  private reloading: Promise<void> | undefined;
  private reloadWanted = false;
  private connecting: Promise<void> | undefined;
  /** Successful loads and failed connection attempts so far (tests and diagnostics). */
  loads = 0;
  failures = 0;

  private constructor(private readonly opts: PgPolicySourceOptions) {
    this.defaults = configPolicy(opts.config.policyd);
    this.table = { fallback: this.defaults, domains: new Map(), invalid: [] };
    this.retryMs = this.retryMin;
  }

  /** Resolves after the first attempt, loaded or not: policyd must start even with PostgreSQL down. */
  static async start(opts: PgPolicySourceOptions): Promise<PgPolicySource> {
    const source = new PgPolicySource(opts);
    await source.connect();
    return source;
  }

  private get retryMin(): number {
    return this.opts.retryMinMs ?? 250;
  }

  /** True while the table follows PostgreSQL (listening and loaded). */
  get connected(): boolean {
    return this.listener !== undefined && !this.down;
  }

  forDomain(domain: string | undefined): EffectivePolicy {
    return lookup(this.table, domain);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.debounceTimer);
    await this.connecting?.catch(() => {});
    await this.reloading?.catch(() => {});
    await this.dropListener();
  }

  private connect(): Promise<void> {
    this.connecting ??= this.attempt().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async attempt(): Promise<void> {
    if (this.closed) return;
    try {
      const client = await connectDedicated(this.opts.config.database);
      this.listener = client;
      client.on('notification', (msg) => {
        if (msg.channel === POLICY_CHANNEL) this.scheduleReload();
      });
      client.on('error', (err) => this.lost(client, err));
      client.on('end', () => this.lost(client, new Error('connection ended')));
      if (this.closed) return void (await this.dropListener());
      await client.query(`LISTEN ${POLICY_CHANNEL}`);
      if (this.opts.migrate ?? true) await migratePolicyDomains(this.opts.pool);
      await this.load();
      if (this.down) this.opts.log.info('PostgreSQL is back: per-domain policy reloaded');
      this.down = false;
      this.retryMs = this.retryMin;
    } catch (err) {
      await this.failed(err as Error);
    }
  }

  private async load(): Promise<void> {
    const { rows } = await this.opts.pool.query<PolicyRow>('SELECT domain, limits, greylist FROM policy_domains');
    const table = buildPolicyTable(this.defaults, rows);
    for (const err of table.invalid) {
      this.opts.log.error({ domain: err.domain, keys: err.keys, err: err.message }, 'ignoring invalid per-domain policy row');
    }
    this.table = table;
    this.loads++;
    this.opts.log.debug({ domains: table.domains.size, invalid: table.invalid.length }, 'per-domain policy loaded');
  }

  private scheduleReload(): void {
    this.reloadWanted = true;
    if (this.closed || this.debounceTimer || this.reloading) return;
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      this.reloading = this.reloadLoop().finally(() => (this.reloading = undefined));
    }, this.opts.debounceMs ?? 50);
  }

  /** Until no notification arrived during the last load, so the newest change is never skipped. */
  private async reloadLoop(): Promise<void> {
    while (this.reloadWanted && !this.closed && !this.down) {
      this.reloadWanted = false;
      try {
        await this.load();
      } catch (err) {
        // The listener may be fine while queries fail (pool exhausted, table dropped): start over.
        await this.failed(err as Error);
        return;
      }
    }
  }

  private lost(client: pg.Client, err: Error): void {
    if (client !== this.listener) return;
    void this.failed(err);
  }

  /** Keep the last table, log the first failure of an outage only, and retry later. */
  private async failed(err: Error): Promise<void> {
    if (this.closed) return;
    this.failures++;
    await this.dropListener();
    if (!this.down) {
      const policy = this.loads > 0 ? 'keeping the last loaded policy' : 'using the config defaults';
      this.opts.log.warn(
        { err: err.message, database: redactUrl(this.opts.config.database.url) },
        `per-domain policy: PostgreSQL unavailable, ${policy} and retrying`,
      );
    } else {
      this.opts.log.debug({ err: err.message, retryMs: this.retryMs }, 'per-domain policy: PostgreSQL still unavailable');
    }
    this.down = true;
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.connect();
    }, this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, this.opts.retryMaxMs ?? 10_000);
  }

  private async dropListener(): Promise<void> {
    const client = this.listener;
    this.listener = undefined;
    if (!client) return;
    client.removeAllListeners('notification');
    // Keep an error listener: a late socket error on a dropped client must not crash the process.
    client.removeAllListeners('error').on('error', () => {});
    client.removeAllListeners('end');
    await client.end().catch(() => {});
  }
}

/** The source `policyd.domainPolicy` asks for. */
export async function createPolicySource(opts: PgPolicySourceOptions & { config: { policyd: Pick<PolicydConfig, 'domainPolicy'> } }): Promise<PolicySource> {
  if (!opts.config.policyd.domainPolicy) return new StaticPolicySource(opts.config.policyd);
  return PgPolicySource.start(opts);
}
