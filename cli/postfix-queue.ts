/**
 * `ceerion postfix-queue-metrics`: serves the Postfix queue backlog (core/postfix-queue.ts) on
 * /metrics, for a Postfix that runs elsewhere than `ceerion start` (the compose file runs it in a
 * container with the Postfix queue volume mounted read-only). It needs read access to the queue
 * directories (mode 0700, owner postfix): run it as root or as the postfix user.
 */
import type { Command } from 'commander';
import { registerPostfixQueueMetrics } from '../core/postfix-queue.ts';
import { loadOrExit, startRuntime } from './runtime.ts';

interface Options {
  queueDir: string;
  config?: string;
  metricsPort?: string;
  logLevel?: string;
  cacheMs: string;
}

export function registerPostfixQueueCommand(program: Command): void {
  program
    .command('postfix-queue-metrics')
    .description('serve the Postfix queue backlog (messages and oldest age per queue) as Prometheus metrics')
    .option('--queue-dir <dir>', "Postfix's queue_directory (`postconf -h queue_directory`)", '/var/spool/postfix')
    .option('-c, --config <file>', 'YAML configuration file (CEERION_* environment variables override it)')
    .option('--metrics-port <port>', 'port of /metrics (default metrics.port); host is metrics.host')
    .option('--cache-ms <ms>', 'walk the queue at most this often, whatever the scrape rate', '5000')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent')
    .action(async (o: Options) => {
      const config = loadOrExit(o);
      if (!config.metrics.enabled) {
        process.stderr.write('ceerion postfix-queue-metrics: metrics are disabled (metrics.enabled / --metrics-port 0): nothing to serve\n');
        process.exit(2);
      }
      if (!/^\d+$/.test(o.cacheMs)) {
        process.stderr.write(`ceerion postfix-queue-metrics: --cache-ms must be a whole number, not ${JSON.stringify(o.cacheMs)}\n`);
        process.exit(2);
      }
      const rt = await startRuntime(config, 'postfix-queue');
      registerPostfixQueueMetrics(rt.registry, o.queueDir, { log: rt.log, cacheMs: Number(o.cacheMs) });
      rt.log.info({ queueDir: o.queueDir }, 'postfix queue metrics: serving');
    });
}
