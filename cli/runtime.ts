/** What every service command shares: load the config once, make the logger, metrics and lifecycle. */
import type { Command } from 'commander';
import type { Registry } from 'prom-client';
import { ConfigError, loadConfig, unknownEnvVariables } from '../core/config/load.ts';
import type { Config } from '../core/config/schema.ts';
import { Lifecycle } from '../core/lifecycle.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { createRegistry, serveMetrics } from '../core/metrics.ts';

export interface ServiceOptions {
  config?: string;
  listen?: string;
  metricsPort?: string;
  logLevel?: string;
}

/** Options every service subcommand takes. */
export function withServiceOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'YAML configuration file (CEERION_* environment variables override it)')
    .option('-l, --listen <address>', 'listen address: inet:HOST:PORT or unix:/path (Postfix notation)')
    .option('--metrics-port <port>', 'Prometheus /metrics port on loopback (0 disables)')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent');
}

export interface Runtime {
  config: Config;
  log: Logger;
  registry: Registry;
  lifecycle: Lifecycle;
}

export function loadOrExit(opts: ServiceOptions, listenKey?: 'milter' | 'policyd' | 'lmtp'): Config {
  const overrides: Record<string, unknown> = {};
  if (opts.listen && listenKey) overrides[listenKey] = { listen: opts.listen };
  if (opts.logLevel) overrides.log = { level: opts.logLevel };
  if (opts.metricsPort !== undefined) {
    // Not a number: hand the string on, so the schema names the key and the bad value.
    const port = /^\d+$/.test(opts.metricsPort) ? Number(opts.metricsPort) : opts.metricsPort;
    overrides.metrics = port === 0 ? { enabled: false } : { port };
  }
  try {
    return loadConfig({ ...(opts.config ? { file: opts.config } : {}), overrides });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`ceerion: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/** `service` names the process's log lines; `start` runs several and names them per service instead. */
export async function startRuntime(config: Config, service?: string): Promise<Runtime> {
  const log = createLogger(config.log.level, service);
  const registry = createRegistry();
  const lifecycle = new Lifecycle(log);
  for (const name of unknownEnvVariables(process.env)) log.warn({ variable: name }, 'ignoring unknown CEERION_* variable');
  if (config.metrics.enabled) {
    const metrics = await serveMetrics(registry, config.metrics.host, config.metrics.port, log);
    lifecycle.add({ name: 'metrics', stop: () => metrics.stop() });
  }
  lifecycle.handleSignals();
  process.on('uncaughtException', (err) => {
    // A bug must not take every session down silently; log it loudly and keep serving.
    log.fatal({ err }, 'uncaught exception');
  });
  process.on('unhandledRejection', (err) => log.fatal({ err }, 'unhandled rejection'));
  return { config, log, registry, lifecycle };
}
