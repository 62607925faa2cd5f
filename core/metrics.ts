/**
 * Prometheus metrics: one registry per process, served on a loopback port at /metrics.
 * Services create their metrics against the registry passed to them (no global default registry),
 * so tests can run several services in one process.
 */
import http from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from './log.ts';

export function createRegistry(withDefaults = true): Registry {
  const registry = new Registry();
  if (withDefaults) collectDefaultMetrics({ register: registry, prefix: 'ceerion_' });
  return registry;
}

export interface MetricsServer {
  port: number;
  stop(): Promise<void>;
}

/** A registry, or anything that renders one (policyd's cluster primary merges its workers'). */
export interface MetricsSource {
  contentType: string;
  metrics(): Promise<string>;
}

export function serveMetrics(registry: MetricsSource, host: string, port: number, log: Logger): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && req.url !== '/metrics/')) {
      res.writeHead(404).end('not found\n');
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (err: unknown) => {
        log.error({ err }, 'metrics collection failed');
        res.writeHead(500).end('metrics collection failed\n');
      },
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const addr = server.address();
      const bound = typeof addr === 'object' && addr ? addr.port : port;
      log.info({ url: `http://${host}:${bound}/metrics` }, 'metrics endpoint listening');
      resolve({
        port: bound,
        stop: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}
