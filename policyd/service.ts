/**
 * `ceerion policyd`: wires the parts together from the one config object.
 * - Postfix policy delegation: PolicyServer → PolicyDecider → RedisPolicyStore (+ per-domain
 *   policy from PostgreSQL, or the config alone).
 * - Dovecot authentication policy: AuthPolicyServer (HTTP) → BruteForceGuard, same Redis.
 * Nothing here holds state beyond a connection: every count lives in Redis, every policy row in
 * PostgreSQL, so any number of instances can run.
 */
import type { Registry } from 'prom-client';
import type { Config } from '../core/config/schema.ts';
import { createPool } from '../core/db/pool.ts';
import type { Logger } from '../core/log.ts';
import { createRedis, redisReady } from '../core/redis.ts';
import { AuthPolicyServer } from './auth-policy/http-server.ts';
import { decisionMetrics, PolicyDecider } from './decide.ts';
import { createPolicySource, StaticPolicySource } from './domain-policy/source.ts';
import { PolicyServer } from './server.ts';
import { RedisPolicyStore } from './store/redis-store.ts';
import type { PolicySource } from './types.ts';

export interface PolicyService {
  /** Postfix notation, e.g. inet:127.0.0.1:10040. */
  address: string;
  /** The auth-policy HTTP port, when enabled. */
  authPolicyPort?: number;
  stop(): Promise<void>;
}

export async function startPolicyService(config: Config, deps: { log: Logger; registry?: Registry; sharedListener?: boolean }): Promise<PolicyService> {
  const { log, registry } = deps;
  const stops: Array<() => Promise<unknown>> = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch((err: Error) => log.error({ err: err.message }, 'policyd: stop step failed'));
  };
  try {
    // Redis: waited for briefly, never required. policyd must start (and answer onStoreError)
    // even while Redis is down; the client keeps reconnecting.
    const redis = createRedis(config.redis, { log: log.child({ store: 'redis' }) });
    stops.push(async () => redis.quit().catch(() => redis.disconnect()));
    await redisReady(redis, 2_000).catch(() => log.warn({ url: config.redis.url.replace(/\/\/[^@/]*@/, '//***@') }, 'Redis not reachable yet; answering onStoreError until it is'));

    let policies: PolicySource;
    if (config.policyd.domainPolicy) {
      const pool = createPool(config.database, { log: log.child({ store: 'postgres' }) });
      stops.push(() => pool.end());
      // Starts with the config's policy if PostgreSQL is down, and keeps trying.
      policies = await createPolicySource({ pool, config, log: log.child({ store: 'postgres' }) });
    } else policies = new StaticPolicySource(config.policyd);
    stops.push(() => policies.close());

    const store = new RedisPolicyStore(redis);
    const decider = new PolicyDecider(config.policyd, store, policies, decisionMetrics(registry));
    const server = new PolicyServer({ ...config.policyd, listen: config.policyd.listen, handler: decider, log, ...(registry ? { registry } : {}), ...(deps.sharedListener ? { sharedListener: true } : {}) });
    const address = await server.start();
    stops.push(() => server.stop());

    let authPolicyPort: number | undefined;
    if (config.authPolicy.enabled) {
      const auth = new AuthPolicyServer({ config: config.authPolicy, redis, log: log.child({ service: 'auth-policy' }), ...(registry ? { registry } : {}), shutdownGraceMs: config.policyd.shutdownGraceMs });
      authPolicyPort = await auth.start();
      stops.push(() => auth.stop());
    }
    log.info({ address, authPolicyPort, domainPolicy: config.policyd.domainPolicy }, 'policyd listening');
    return { address, ...(authPolicyPort !== undefined ? { authPolicyPort } : {}), stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
