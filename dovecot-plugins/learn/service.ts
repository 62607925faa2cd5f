/**
 * `ceerion learner`: the gateway socket Dovecot pipes users' Junk moves to, the spool importer for
 * the fallback program's files, and the worker that feeds the queue to the classifier. Stateless:
 * the queue is in Redis, the learn log in PostgreSQL, so several learners may run (one gateway on
 * each Dovecot host, workers anywhere).
 */
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { SpamEngine } from '../../classifier/engine/engine.ts';
import { encodeFeatures } from '../../classifier/engine/payload.ts';
import { StoreLearner, type Learner } from '../../classifier/learn/learner.ts';
import { migrateClassifier, PgModelStore } from '../../classifier/model/store.ts';
import type { Config } from '../../core/config/schema.ts';
import { createPool } from '../../core/db/pool.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import { createRedis } from '../../core/redis.ts';
import { LearnGateway, type LearnSink } from './gateway.ts';
import { LearnQueue } from './queue.ts';
import { ensureSpool, SpoolImporter, writeSpoolFile } from './spool.ts';
import { LearnWorker } from './worker.ts';

export interface LearnerServiceDeps {
  log?: Logger;
  /** Default: a client from config.redis with learn.queue.commandTimeoutMs. */
  redis?: Redis;
  /** Default: StoreLearner on config.database (the classifier's learn log). */
  learner?: Learner;
  /** Run the gateway (default: when learn.gateway.socket is set). */
  gateway?: boolean;
  /** Run the worker (default: learn.worker.enabled). */
  worker?: boolean;
  /**
   * Go on without the gateway when its socket cannot be created (e.g. `ceerion start` as a user
   * who may not write /run/dovecot): Dovecot then uses the spooling program. Default false.
   */
  gatewayOptional?: boolean;
}

export interface LearnerService {
  queue: LearnQueue;
  worker?: LearnWorker;
  gateway?: LearnGateway;
  importer: SpoolImporter;
  stop(): Promise<void>;
}

/** The classifier's learning entry point, as `ceerion learn` builds it. */
export async function classifierLearner(config: Config): Promise<{ learner: Learner; pool: pg.Pool }> {
  const pool = createPool(config.database, { max: 2 });
  try {
    await migrateClassifier(pool);
    // Features depend on the config, not on a model: an untrained engine computes the same payload.
    const engine = await SpamEngine.create(config.classifier);
    return { learner: new StoreLearner({ store: new PgModelStore(pool), payload: (m) => encodeFeatures(engine.features(m)) }), pool };
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
}

export async function startLearnerService(config: Config, deps: LearnerServiceDeps = {}): Promise<LearnerService> {
  const cfg = config.learn;
  const log = deps.log ?? silentLogger;
  const ownRedis = !deps.redis;
  const redis = deps.redis ?? createRedis({ ...config.redis, commandTimeoutMs: cfg.queue.commandTimeoutMs }, { log });
  const queue = new LearnQueue(redis, { stream: cfg.queue.stream, deadStream: cfg.queue.deadStream, group: cfg.queue.group, maxLength: cfg.queue.maxLength });
  const stops: (() => Promise<void>)[] = [];
  const stop = async (): Promise<void> => {
    for (const s of stops.reverse()) await s().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'learner stop step failed'));
    if (ownRedis) redis.disconnect();
  };
  try {
    await ensureSpool(cfg.spool.dir);
    const importer = new SpoolImporter({ dir: cfg.spool.dir, maxMessageBytes: cfg.maxMessageBytes, enqueue: (job) => queue.add(job), log });
    const sink: LearnSink = {
      async accept(job) {
        try {
          await queue.add(job);
          return 'queued';
        } catch (err) {
          // Redis down: keep it on local disk; the importer queues it when Redis is back.
          log.warn({ err: (err as Error).message, user: job.user }, 'learn queue unavailable; message spooled');
          await writeSpoolFile(cfg.spool.dir, job);
          return 'spooled';
        }
      },
    };
    const scan = (): void => {
      importer.scan().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'learn spool import paused (queue unavailable?)'));
    };
    scan();
    const timer = setInterval(scan, cfg.spool.scanIntervalMs);
    timer.unref();
    stops.push(async () => clearInterval(timer));

    let gateway: LearnGateway | undefined;
    if (deps.gateway ?? cfg.gateway.socket !== '') {
      gateway = new LearnGateway({
        socket: cfg.gateway.socket,
        socketMode: cfg.gateway.socketMode,
        sink,
        maxMessageBytes: cfg.maxMessageBytes,
        maxHeaderBytes: cfg.gateway.maxHeaderBytes,
        idleTimeoutMs: cfg.gateway.idleTimeoutMs,
        log: log.child({ part: 'gateway' }),
      });
      try {
        await gateway.start();
        const g = gateway;
        stops.push(() => g.stop());
      } catch (err) {
        if (!deps.gatewayOptional) throw err;
        log.warn({ socket: cfg.gateway.socket, err: (err as Error).message }, 'learn gateway not started; Dovecot will use the spooling program');
        gateway = undefined;
      }
    }

    let worker: LearnWorker | undefined;
    if (deps.worker ?? cfg.worker.enabled) {
      // Its own connection: XREADGROUP BLOCK holds a connection, and the gateway's XADD must not
      // queue behind it.
      const workerRedis = redis.duplicate();
      stops.push(async () => workerRedis.disconnect());
      const workerQueue = new LearnQueue(workerRedis, queue.names);
      let learner = deps.learner;
      if (!learner) {
        const built = await classifierLearner(config);
        learner = built.learner;
        stops.push(() => built.pool.end());
      }
      worker = new LearnWorker({
        queue: workerQueue,
        learner,
        scope: cfg.scope,
        batchSize: cfg.worker.batchSize,
        retryDelayMs: cfg.worker.retryDelayMs,
        maxAttempts: cfg.worker.maxAttempts,
        log: log.child({ part: 'worker' }),
        ...(gateway ? { busy: () => gateway!.busy() } : {}),
      });
      worker.start();
      const w = worker;
      stops.push(() => w.stop());
    }
    return { queue, worker, gateway, importer, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
