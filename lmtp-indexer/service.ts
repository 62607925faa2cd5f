/**
 * `ceerion lmtp`: wires the indexer from the one config object.
 *
 *   Postfix ──LMTP──▶ LmtpServer ─▶ DeliveryPipeline ─┬─▶ Dovecot LMTP (per-recipient answers)
 *                                                     └─▶ IndexWriter ─▶ PostgreSQL | backlog
 *   HTTP: GET /search, GET /events (WebSocket), POST /mail/send, POST /push (Dovecot Lua), GET /healthz
 *
 * The process keeps no state of its own beyond the backlog of index writes that PostgreSQL could
 * not take yet (a local, fsync'd file replayed into PostgreSQL): run as many as you like behind
 * Postfix; events fan out through PostgreSQL LISTEN/NOTIFY.
 */
import type { Registry } from 'prom-client';
import type { Config } from '../core/config/schema.ts';
import { createPool } from '../core/db/pool.ts';
import { parseListen } from '../core/listen.ts';
import type { Logger } from '../core/log.ts';
import { EventHub } from './events/hub.ts';
import { startEventRetention } from './events/retention.ts';
import { eventsUpgrade } from './events/websocket.ts';
import { ApiServer } from './http/server.ts';
import { sendJson, type Route } from './http/route.ts';
import { parseForIndex } from './index/parse.ts';
import { migrateIndex } from './index/schema.ts';
import { IndexWriter } from './index/writer.ts';
import { pushRoute, type PushRoute } from './push/route.ts';
import { closeIdleDovecotConnections, deliverToDovecot } from './relay/dovecot-client.ts';
import { searchRoute } from './search/route.ts';
import { sendRoute } from './send/route.ts';
import { DeliveryPipeline, type RelayFn } from './server/delivery.ts';
import { LmtpServer } from './server/lmtp-server.ts';
import { LmtpMetrics } from './server/metrics.ts';
import { accountLookup, accountOfRecipient } from './server/recipient-lookup.ts';

export interface LmtpService {
  /** Postfix notation of the LMTP listener, e.g. inet:127.0.0.1:2424. */
  address: string;
  /** The HTTP API's port (search, events, send, push), when enabled. */
  httpPort?: number;
  writer: IndexWriter;
  stop(): Promise<void>;
}

export async function startLmtpService(config: Config, deps: { log: Logger; registry?: Registry }): Promise<LmtpService> {
  const { log, registry } = deps;
  const lmtp = config.lmtp;
  const stops: Array<() => Promise<unknown>> = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch((err: Error) => log.error({ err: err.message }, 'lmtp: stop step failed'));
  };
  try {
    const pool = createPool(config.database, { log: log.child({ store: 'postgres' }) });
    stops.push(() => pool.end());
    // Migrations need the database; delivery does not (the backlog takes index writes), but a
    // first start with no schema can't index anything, so it waits for PostgreSQL here.
    await migrateIndex(pool);

    const writer = new IndexWriter({ pool, log: log.child({ part: 'index' }), backlogDir: lmtp.index.backlogDir, replayIntervalMs: lmtp.index.replayIntervalMs });
    await writer.start();
    stops.push(() => writer.stop());

    const accountOf = accountOfRecipient(lmtp.recipientDelimiter);
    const dovecot = parseListen(lmtp.dovecot.address);
    const relay: RelayFn = (envelope, body, size, relayLog) =>
      deliverToDovecot({
        address: dovecot,
        lhloName: lmtp.serverName ?? config.hostname,
        mailFrom: envelope.mailFrom,
        mailParams: { ...envelope.mailParams, SIZE: String(size) },
        recipients: envelope.recipients.map((r) => r.address),
        body,
        timeoutMs: lmtp.dovecot.timeoutMs,
        log: relayLog,
      });
    const delivery = new DeliveryPipeline({
      relay,
      parse: (input) => parseForIndex(input, lmtp.index),
      index: writer,
      language: lmtp.index.language,
      accountOf,
      onIndexed: (accounts) => {
        for (const a of accounts) void push?.receiver.retryNow(a);
      },
    });

    let httpPort: number | undefined;
    // Dovecot posts a delivery's push notification before its 250 reaches us, so before our index
    // row exists: the receiver holds it and retries, and we nudge it as soon as the row is written.
    let push: PushRoute | undefined;
    if (lmtp.http.enabled) {
      const hub = await EventHub.start({ pool, database: config.database, log: log.child({ part: 'events' }) });
      stops.push(() => hub.stop());
      const events = eventsUpgrade({ pool, hub });
      const retention = startEventRetention({ pool, days: lmtp.http.eventRetentionDays, intervalMs: 3_600_000, log: log.child({ part: 'events' }) });
      stops.push(async () => retention.stop());
      push = pushRoute({ pool, token: lmtp.http.pushToken, log: log.child({ part: 'push' }) });
      const receiver = push.receiver;
      stops.push(async () => receiver.close());
      const health: Route = {
        method: 'GET',
        path: '/healthz',
        async handle(_req, res) {
          const db = await pool.query('SELECT 1').then(
            () => true,
            () => false,
          );
          const backlog = await writer.backlogSize();
          sendJson(res, db ? 200 : 503, { database: db, backlog });
        },
      };
      const api = new ApiServer({
        host: lmtp.http.host,
        port: lmtp.http.port,
        log: log.child({ part: 'http' }),
        routes: [health, searchRoute({ pool, maxPageSize: lmtp.http.maxPageSize, language: lmtp.index.language }), push, sendRoute(lmtp.submission)],
        upgrades: [events],
      });
      httpPort = await api.listen();
      stops.push(() => api.stop());
      // Stops run in reverse: WebSocket clients are closed first, or the HTTP server's close
      // would wait for their upgraded sockets forever.
      stops.push(() => events.close());
    }

    const server = new LmtpServer({
      config: lmtp,
      hostname: config.hostname,
      log: log.child({ part: 'lmtp' }),
      delivery,
      ...(lmtp.recipientLookup.enabled ? { recipientCheck: accountLookup(pool, lmtp.recipientLookup, accountOf) } : {}),
      ...(registry ? { metrics: new LmtpMetrics(registry) } : {}),
    });
    const address = await server.listen();
    stops.push(async () => closeIdleDovecotConnections());
    stops.push(() => server.stop());
    log.info({ address, httpPort, dovecot: lmtp.dovecot.address }, 'lmtp indexer listening');
    return { address, ...(httpPort !== undefined ? { httpPort } : {}), writer, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
