/**
 * The long-running services (milter, policyd, LMTP indexer) and the milter's Postfix snippet. Kept
 * apart from the other commands so a service process loads only what it runs (cli/commands.ts).
 */
import cluster from 'node:cluster';
import type { Command } from 'commander';
import { postfixSnippet } from '../milter/postfix-snippet.ts';
import { startMilterService } from '../milter/service.ts';
import { startPolicyService } from '../policyd/service.ts';
import { joinClusterMetrics, reportWorkerReady, startPolicydCluster, workerCount } from '../policyd/cluster.ts';
import type { Config } from '../core/config/schema.ts';
import { parseListen } from '../core/listen.ts';
import { serveMetrics } from '../core/metrics.ts';
import { startLmtpService } from '../lmtp-indexer/service.ts';
import { createResolver } from '../core/dns/index.ts';
import type { Logger } from '../core/log.ts';
import { loadOrExit, startRuntime, withServiceOptions, type Runtime, type ServiceOptions } from './runtime.ts';

/**
 * The milter with its DNS resolver (and the classifier and learn endpoint, when enabled),
 * registered for shutdown; resolves to the address it listens on.
 */
async function runMilter(rt: Runtime, log: Logger): Promise<string> {
  const dns = createResolver(rt.config.dns, { log });
  const service = await startMilterService(rt.config, { log, registry: rt.registry, resolver: dns.resolve }).catch(async (err: unknown) => {
    await dns.close();
    throw err;
  });
  rt.lifecycle.add({ name: 'milter', stop: () => service.stop().then(() => dns.close()) });
  return service.address;
}

/** The policy service (Postfix policy delegation + Dovecot auth policy), registered for shutdown. */
async function runPolicyd(rt: Runtime, log: Logger) {
  const service = await startPolicyService(rt.config, { log, registry: rt.registry });
  rt.lifecycle.add({ name: 'policyd', stop: () => service.stop() });
  return service;
}

/** Workers and the cluster's primary leave /metrics to the primary's merged endpoint. */
const withoutMetrics = (config: Config): Config => ({ ...config, metrics: { ...config.metrics, enabled: false } });

/** A cluster worker: one policyd on the primary's shared listener; SIGTERM drains it as usual. */
async function runPolicydWorker(config: Config): Promise<void> {
  const rt = await startRuntime(withoutMetrics(config), 'policyd');
  joinClusterMetrics(rt.registry);
  const service = await startPolicyService(config, { log: rt.log.child({ worker: cluster.worker?.id }), registry: rt.registry, sharedListener: true });
  rt.lifecycle.add({ name: 'policyd', stop: () => service.stop() });
  // The primary is gone (SIGKILL, crash): nothing would restart or stop this worker, so stop now.
  process.once('disconnect', () => void rt.lifecycle.stopAll('policyd primary gone').then(() => process.exit(0)));
  reportWorkerReady(service.address, service.authPolicyPort);
}

/** The cluster's primary: forks the workers, restarts the ones that die, serves their merged metrics. */
async function runPolicydPrimary(config: Config, workers: number) {
  const rt = await startRuntime(withoutMetrics(config), 'policyd');
  const group = await startPolicydCluster({
    workers,
    listen: parseListen(config.policyd.listen),
    log: rt.log,
    shutdownGraceMs: config.policyd.shutdownGraceMs,
    onStop: (stop) => rt.lifecycle.add({ name: 'policyd cluster', stop }),
  });
  if (config.metrics.enabled) {
    const metrics = await serveMetrics(group.metrics, config.metrics.host, config.metrics.port, rt.log);
    rt.lifecycle.add({ name: 'metrics', stop: () => metrics.stop() });
  }
  return group;
}

/** The LMTP indexer (LMTP from Postfix, relay to Dovecot, index, HTTP API), registered for shutdown. */
async function runLmtp(rt: Runtime, log: Logger) {
  const service = await startLmtpService(rt.config, { log, registry: rt.registry });
  rt.lifecycle.add({ name: 'lmtp', stop: () => service.stop() });
  return service;
}

export function registerServiceCommands(program: Command): void {
  withServiceOptions(program.command('milter').description('run the Sendmail milter (Postfix smtpd_milters)')).action(
    async (opts: ServiceOptions) => {
      const config = loadOrExit(opts, 'milter');
      const rt = await startRuntime(config, 'milter');
      await runMilter(rt, rt.log);
    },
  );

  withServiceOptions(
    program.command('policyd').description('run the policy service (Postfix check_policy_service, Dovecot auth policy)'),
  ).action(async (opts: ServiceOptions) => {
    const config = loadOrExit(opts, 'policyd');
    if (cluster.isWorker) return runPolicydWorker(config);
    const workers = workerCount(config.policyd.workers);
    const service = workers > 1 ? await runPolicydPrimary(config, workers) : await startRuntime(config, 'policyd').then((rt) => runPolicyd(rt, rt.log));
    const auth = service.authPolicyPort !== undefined ? `, auth policy on http://${config.authPolicy.host}:${service.authPolicyPort}/` : '';
    process.stderr.write(`policyd on ${service.address}${auth}${workers > 1 ? ` (${workers} worker processes)` : ''}\n`);
  });

  withServiceOptions(
    program.command('lmtp').description('run the LMTP indexer (Postfix virtual_transport → Dovecot LMTP, PostgreSQL index, search/events API)'),
  ).action(async (opts: ServiceOptions) => {
    const config = loadOrExit(opts, 'lmtp');
    const rt = await startRuntime(config, 'lmtp');
    const service = await runLmtp(rt, rt.log);
    process.stderr.write(`lmtp indexer on ${service.address}${service.httpPort !== undefined ? `, API on http://${config.lmtp.http.host}:${service.httpPort}/` : ''}\n`);
  });

  program
    .command('postfix-config')
    .description('print the main.cf lines for the milter')
    .option('-c, --config <file>', 'YAML configuration file')
    .option('-l, --listen <address>', 'the milter address Postfix should use')
    .action((opts: ServiceOptions) => {
      const config = loadOrExit(opts, 'milter');
      process.stdout.write(postfixSnippet(config.milter.listen));
    });
}
