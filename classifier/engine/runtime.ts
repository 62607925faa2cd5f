/**
 * The classifier as one process runs it: the engine in memory, kept in step with PostgreSQL.
 *
 * - `ClassifierRuntime.start` (milter processes): a ModelSubscriber loads the active snapshot and
 *   replays the learn events after it, in id order and exactly once; every later learn or
 *   activation arrives the same way (LISTEN/NOTIFY plus a poll). Until a model exists the engine
 *   is an untrained one, and classify() keeps all mail in the inbox (see classify). PostgreSQL
 *   down at start: the process serves with that engine (or the last one) and the subscriber
 *   retries; a classifier must never keep the milter from starting.
 * - `ClassifierRuntime.load` (CLI commands): the same catch-up once, no subscriber.
 * - Learning: `learner()` only records the event. The recording process applies it when the
 *   subscriber delivers it, like every other process, so each process applies each event once
 *   and in the same order, whoever recorded it.
 * - Per-user scopes ('user:…', 'domain:…') are not applied: the milter scores a message once for
 *   all its recipients, so it has no single user whose counts could apply. Such events are
 *   counted (stats.otherScopes) and skipped; the global model is untouched by them.
 */
import type pg from 'pg';
import type { Config } from '../../core/config/schema.ts';
import type { DatabaseConfig } from '../../core/config/policyd.ts';
import type { ClassifierConfig } from '../../core/config/classifier.ts';
import { MigrationError } from '../../core/db/migrate.ts';
import { redactUrl } from '../../core/db/pool.ts';
import type { Logger } from '../../core/log.ts';
import { StoreLearner } from '../learn/learner.ts';
import { decodeModel, encodeModel } from '../model/container.ts';
import { migrateClassifier, PgModelStore } from '../model/store.ts';
import { ModelSubscriber, type ModelSubscriberOptions } from '../model/subscriber.ts';
import type { LearnEvent } from '../model/types.ts';
import type { Classification } from '../types.ts';
import { engineFromSections, engineSections, SpamEngine } from './engine.ts';
import { decodeFeatures, encodeFeatures } from './payload.ts';

export interface ClassifierRuntimeOptions {
  cfg: Config;
  pool: pg.Pool;
  log: Logger;
  /** Where the subscriber opens its LISTEN connection (default cfg.database). */
  database?: DatabaseConfig;
  /** Subscriber tuning (tests): poll interval defaults to cfg.classifier.pollMs. */
  subscriber?: Partial<Pick<ModelSubscriberOptions, 'pollMs' | 'retryMinMs' | 'retryMaxMs' | 'batchSize'>>;
}

export interface SnapshotResult {
  version: number;
  /** The newest learn event the snapshot includes. */
  lastEventId: bigint;
  bytes: number;
}

/** Components that vote without having learned anything (hand-written rules). */
const RULES_ONLY = new Set(['membranes']);

/** Read per catch-up query by `load`. */
const BATCH = 1000;

export class ClassifierRuntime {
  readonly store: PgModelStore;
  /** Counters for tests, `classify` and logs. */
  readonly stats = { models: 0, applied: 0, otherScopes: 0, badPayloads: 0 };
  private engine: SpamEngine;
  /** The newest event the engine in memory includes: a snapshot of it is complete up to here. */
  private applied = 0n;
  private version: number | null = null;
  private subscriber: ModelSubscriber | undefined;

  private constructor(
    private readonly cfg: ClassifierConfig,
    private readonly log: Logger,
    pool: pg.Pool,
    engine: SpamEngine,
  ) {
    this.store = new PgModelStore(pool);
    this.engine = engine;
  }

  /** Migrate, start the subscriber, and resolve after its first attempt (loaded or not). */
  static async start(opts: ClassifierRuntimeOptions): Promise<ClassifierRuntime> {
    const rt = new ClassifierRuntime(opts.cfg.classifier, opts.log, opts.pool, await SpamEngine.create(opts.cfg.classifier));
    const database = opts.database ?? opts.cfg.database;
    let migrated = true;
    try {
      await migrateClassifier(opts.pool);
    } catch (err) {
      migrated = false;
      // A migration that fails on a reachable database (edited file, newer schema) is an admin's
      // problem to fix, so it is an error. Unreachable is an outage: the subscriber says so once
      // and waits it out.
      if (err instanceof MigrationError) {
        opts.log.error({ database: redactUrl(database.url), schema: database.schema, err: err.message }, 'classifier migrations failed; scoring with an untrained model');
      }
    }
    rt.subscriber = await ModelSubscriber.start({
      store: rt.store,
      database,
      log: opts.log,
      pollMs: opts.cfg.classifier.pollMs,
      ...opts.subscriber,
      // Not migrated yet: the subscriber migrates on each (re)connect until it has worked.
      ...(migrated ? {} : { migratePool: opts.pool }),
      onModel: (version, blob, lastEventId) => rt.loadModel(version, blob, lastEventId),
      onEvents: (events) => rt.applyEvents(events),
    });
    if (opts.cfg.classifier.learn.perUser) {
      opts.log.warn('classifier.learn.perUser: per-user learns are recorded but not applied yet; scoring uses the global model');
    }
    if (rt.version === null) opts.log.info({ connected: rt.subscriber.connected }, 'no classifier model yet: every message scores as inbox until one is trained');
    return rt;
  }

  /**
   * The active model plus every retained event after it, read once (CLI). Resolves with
   * `version` null when no model is stored. Throws when PostgreSQL is unreachable.
   */
  static async load(opts: Pick<ClassifierRuntimeOptions, 'cfg' | 'pool' | 'log'>): Promise<ClassifierRuntime> {
    await migrateClassifier(opts.pool);
    const rt = new ClassifierRuntime(opts.cfg.classifier, opts.log, opts.pool, await SpamEngine.create(opts.cfg.classifier));
    // readUpdates reads the model and the events after it in one snapshot; a model activated
    // between two batches comes back in the next read and replaces the one being replayed.
    for (;;) {
      const u = await rt.store.readUpdates({ version: rt.version, afterId: rt.applied }, BATCH);
      if (u.model) await rt.loadModel(u.model.version, u.model.blob, u.model.lastEventId);
      rt.applyEvents(u.events);
      if (u.events.length < BATCH) return rt;
    }
  }

  /**
   * Score a message with the model in memory (SpamScorer, for the milter's spam check). Only a
   * component that learned from mail may move it out of the inbox: the membranes' hand-written
   * rules vote from the start, and alone they put an untrained engine's score near 0.5, above
   * the junk threshold, for every message (ham included) until a model is trained.
   */
  classify(raw: Buffer): Classification {
    const r = this.engine.classify(raw);
    if (r.verdict !== 'inbox' && !r.components.some((c) => c.voted && !RULES_ONLY.has(c.name))) return { ...r, verdict: 'inbox' };
    return r;
  }

  /** The engine in memory now (learns update it in place; a newly loaded model replaces it). */
  get current(): SpamEngine {
    return this.engine;
  }

  /** The stored version the engine was loaded from (null: untrained). */
  get modelVersion(): number | null {
    return this.version;
  }

  /** The newest learn event the engine includes. */
  get lastEventId(): bigint {
    return this.applied;
  }

  /** Listening and caught up (always false for `load`). */
  get connected(): boolean {
    return this.subscriber?.connected ?? false;
  }

  /** Catch up with PostgreSQL now (live runtimes; tests). */
  async sync(): Promise<void> {
    await this.subscriber?.sync();
  }

  /**
   * Records learns for the global model or a user's. Features depend on the config only, never on
   * the model, so any engine can compute the payload.
   */
  learner(): StoreLearner {
    return new StoreLearner({ store: this.store, payload: (raw) => encodeFeatures(this.engine.features(raw)) });
  }

  /**
   * Compaction: save the engine in memory as a new active version that includes every event up to
   * `lastEventId`, so later starts replay only what came after. Engine and cursor are read in one
   * synchronous step, while no batch can be half applied.
   */
  async snapshot(note?: string): Promise<SnapshotResult> {
    const engine = this.engine;
    const lastEventId = this.applied;
    const blob = encodeModel(engineSections(engine, { source: 'snapshot', baseVersion: this.version, lastEventId: String(lastEventId), ...(note ? { note } : {}) }));
    const version = await this.store.saveModel(blob, { lastEventId, note: note ?? null, activate: true });
    return { version, lastEventId, bytes: blob.length };
  }

  async close(): Promise<void> {
    await this.subscriber?.close();
    this.subscriber = undefined;
  }

  /** onModel: build the new engine aside, then swap it in with its cursor in one step. */
  private async loadModel(version: number, blob: Buffer, lastEventId: bigint): Promise<void> {
    const engine = await engineFromSections(this.cfg, decodeModel(blob).sections);
    this.engine = engine;
    this.version = version;
    this.applied = lastEventId;
    this.stats.models++;
  }

  /**
   * onEvents: synchronous, so a classify never sees a half-applied relearn. A payload that does
   * not decode is logged and skipped alone: throwing would make the subscriber skip the batch.
   */
  private applyEvents(events: LearnEvent[]): void {
    for (const e of events) {
      if (e.id <= this.applied) continue;
      this.applied = e.id;
      if (e.scope !== '') {
        this.stats.otherScopes++;
        continue;
      }
      let f;
      try {
        f = decodeFeatures(e.payload);
      } catch (err) {
        this.stats.badPayloads++;
        this.log.error({ eventId: String(e.id), err: (err as Error).message }, 'learn event payload unreadable; skipped');
        continue;
      }
      // A relearn first takes back what the message taught as its old class.
      if (e.previous) this.engine.learn(f, e.previous, -1);
      this.engine.learn(f, e.cls, 1);
      this.stats.applied++;
    }
  }
}
