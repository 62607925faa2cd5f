/**
 * Start and stop of the suite's small HTTP servers (the Dovecot auth-policy endpoint, the MTA-STS
 * policy server, the LMTP indexer's API): one place for the two things that are easy to get
 * subtly wrong. A listen error must reject start (a port in use), while later errors are only
 * logged; and a stop must let requests in flight finish within a grace period without waiting
 * forever on idle keep-alive sockets.
 */
import type http from 'node:http';
import type { Logger } from '../log.ts';

/** Listens on host:port (0 picks a free port); resolves with the bound port. */
export function listenHttp(server: http.Server, at: { host: string; port: number }, log: Logger, name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      server.on('error', (err) => log.error({ err: err.message }, `${name} server error`));
      resolve(boundPort(server));
    });
  });
}

/** The port the server is bound to; 0 before it listens. */
export function boundPort(server: http.Server): number {
  const addr = server.address();
  return typeof addr === 'object' && addr ? addr.port : 0;
}

/**
 * Stop accepting, let requests in flight finish within `graceMs`, then close the rest. Idle
 * keep-alive sockets are closed at once, and again as each busy one finishes a response (call
 * `closeIdleWhileStopping` from the request handler), or they would hold close() open.
 */
export function closeHttp(server: http.Server, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!server.listening) return resolve();
    const force = setTimeout(() => server.closeAllConnections(), graceMs);
    force.unref();
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
}

/** In a request handler: once this response is done, a stopping server drops the idle socket. */
export function closeIdleWhileStopping(server: http.Server, res: http.ServerResponse, stopping: () => boolean): void {
  res.once('close', () => {
    if (stopping()) server.closeIdleConnections();
  });
}
