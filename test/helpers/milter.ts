/** Start an in-process `ceerion milter` on an ephemeral loopback port (or a unix socket) for tests. */
import { parseConfig } from '../../core/config/load.ts';
import type { Config } from '../../core/config/schema.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import { createRegistry } from '../../core/metrics.ts';
import type { Check } from '../../milter/checks/types.ts';
import type { MilterServer } from '../../milter/server.ts';
import { createMilterServer } from '../../milter/service.ts';
import type { Registry } from 'prom-client';

export interface TestMilter {
  server: MilterServer;
  address: string;
  config: Config;
  registry: Registry;
  stop(): Promise<void>;
}

export async function startTestMilter(
  opts: { checks?: Check[]; milter?: Record<string, unknown>; log?: Logger; listen?: string } = {},
): Promise<TestMilter> {
  const config = parseConfig({
    hostname: 'mx.test',
    metrics: { enabled: false },
    milter: { listen: opts.listen ?? 'inet:127.0.0.1:0', ...opts.milter },
  });
  const registry = createRegistry(false);
  const server = createMilterServer(config, { log: opts.log ?? silentLogger, registry, ...(opts.checks ? { checks: opts.checks } : {}) });
  const address = await server.start();
  return { server, address, config, registry, stop: () => server.stop(1000) };
}
