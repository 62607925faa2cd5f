/**
 * The supervisor's own /metrics (stack.metricsPorts.supervisor): per service whether it is up and
 * how often it was restarted, and, with the private Postfix, its queue backlog
 * (core/postfix-queue.ts), which the queue-backlog alert in monitoring/alerts.yml watches.
 */
import path from 'node:path';
import { Gauge } from 'prom-client';
import type { Config } from '../core/config/schema.ts';
import type { Logger } from '../core/log.ts';
import { createRegistry, serveMetrics } from '../core/metrics.ts';
import { registerPostfixQueueMetrics } from '../core/postfix-queue.ts';
import type { ServiceStatus } from './contracts.ts';

export async function serveStackMetrics(config: Config, varDir: string, opts: { log: Logger; statuses: () => ServiceStatus[]; postfix: boolean }): Promise<{ stop(): Promise<void> }> {
  const registry = createRegistry();
  new Gauge({
    name: 'ceerion_stack_service_up',
    help: 'Whether the supervised service passed its last health check (1) or not (0)',
    labelNames: ['service'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of opts.statuses()) this.set({ service: s.name }, s.state === 'healthy' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'ceerion_stack_service_restarts',
    help: 'Restarts of the supervised service after crashes since the stack started',
    labelNames: ['service'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of opts.statuses()) this.set({ service: s.name }, s.restarts);
    },
  });
  if (opts.postfix) registerPostfixQueueMetrics(registry, path.join(varDir, 'postfix', 'spool'), { log: opts.log });
  return serveMetrics(registry, config.metrics.host, config.stack.metricsPorts.supervisor, opts.log);
}
