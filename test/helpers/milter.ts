/** Start an in-process `ceerion milter` on an ephemeral loopback port (or a unix socket) for tests. */
import { parseConfig } from '../../core/config/load.ts';
import type { Config } from '../../core/config/schema.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import { createRegistry } from '../../core/metrics.ts';
import type { Check } from '../../milter/checks/types.ts';
import type { MilterServer } from '../../milter/server.ts';
import { createMilterServer } from '../../milter/service.ts';
import type { Registry } from 'prom-client';
import type { DnsResolver } from '../../core/dns/types.ts';
import type { SpamScorer } from '../../milter/checks/spam.ts';

export interface TestMilter {
  server: MilterServer;
  address: string;
  config: Config;
  registry: Registry;
  stop(): Promise<void>;
}

export async function startTestMilter(
  opts: {
    checks?: Check[];
    milter?: Record<string, unknown>;
    log?: Logger;
    listen?: string;
    resolver?: DnsResolver;
    /** The `classifier` config section; the spam check runs only when this is given with a scorer. */
    classifier?: Record<string, unknown>;
    scorer?: SpamScorer;
  } = {},
): Promise<TestMilter> {
  // Authentication does DNS lookups, signing reads keys from disk and the classifier needs a
  // scorer (a model in PostgreSQL): a test turns them on when it is about them, so every other
  // test sees the same negotiation on any machine.
  const checks = { auth: { enabled: false }, dkimSign: { enabled: false }, ...((opts.milter?.checks as Record<string, unknown>) ?? {}) };
  const config = parseConfig({
    hostname: 'mx.test',
    metrics: { enabled: false },
    milter: { listen: opts.listen ?? 'inet:127.0.0.1:0', ...opts.milter, checks },
    classifier: opts.classifier ?? { enabled: false },
  });
  const registry = createRegistry(false);
  const server = createMilterServer(config, {
    log: opts.log ?? silentLogger,
    registry,
    ...(opts.checks ? { checks: opts.checks } : {}),
    ...(opts.resolver ? { resolver: opts.resolver } : {}),
    ...(opts.scorer ? { scorer: opts.scorer } : {}),
  });
  const address = await server.start();
  return { server, address, config, registry, stop: () => server.stop(1000) };
}
