/**
 * PostgreSQL storage of classifier snapshots and the learn log (tables: migrations/0001).
 *
 * - Snapshots are verified containers; exactly one version is active. Activation is serialized by
 *   a transaction-scoped advisory lock (two concurrent activations would otherwise both clear the
 *   old flag and then collide on the one-active index).
 * - recordLearn is idempotent per (message, scope): classifier_learned remembers each message's
 *   class, and only a first learn or a change of class writes an event. The event log is what
 *   every milter process replays (subscriber.ts); a snapshot records the last event it includes.
 * - bigint ids cross this API as bigint; pg returns them as strings, converted here.
 */
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { migrate, type AppliedMigration } from '../../core/db/migrate.ts';
import type { MailClass } from '../types.ts';
import { ModelFormatError, verifyModel } from './container.ts';
import type { ActiveModel, LearnEvent, LearnRequest, LearnResult, ModelVersion, SectionInfo, Updates } from './types.ts';

export const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
/** The name this module's migrations are recorded under in schema_migrations. */
export const MIGRATIONS_MODULE = 'classifier';
/** NOTIFY channel: payload is an event id, or 'model:VERSION' when a version is activated. */
export const CLASSIFIER_CHANNEL = 'ceerion_classifier';

export function migrateClassifier(pool: pg.Pool): Promise<AppliedMigration[]> {
  return migrate(pool, MIGRATIONS_MODULE, MIGRATIONS_DIR);
}

/** Bad input from the caller (not a hash, unknown class, malformed scope). */
export class LearnInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LearnInputError';
  }
}

export class ModelNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelNotFoundError';
  }
}

/** Hex SHA-256 of the raw message: the identity of a message for idempotent learning. */
export function contentHash(raw: Buffer): string {
  return createHash('sha256').update(raw).digest('hex');
}

const HASH = /^[0-9a-f]{64}$/;
/** '' or 'user:…' / 'domain:…' without spaces or control characters (same rule as the table). */
const SCOPE = /^(?:|(?:user|domain):[^\s\p{Cc}]{1,320})$/u;

/** The scope of a learn for `user` (undefined: the global model). */
export function userScope(user: string | undefined): string {
  return user === undefined ? '' : `user:${user}`;
}

export interface SaveModelOptions {
  /** The newest learn event the snapshot includes (0n: none); subscribers replay the rest. */
  lastEventId: bigint;
  note?: string | null;
  /** Make it the active version (the first version saved is activated regardless). */
  activate?: boolean;
}

export interface ImportModelOptions {
  note?: string | null;
  activate?: boolean;
  /**
   * Default: the newest event id at import time, i.e. the imported model is taken as complete
   * and only later learns apply on top (replaying older ones could learn a message twice).
   * 0n replays the whole retained log onto it.
   */
  lastEventId?: bigint;
}

/** Where a subscriber stands: its model version, the last event applied, a version it could not load. */
export interface KnownState {
  version: number | null;
  afterId: bigint;
  skipVersion?: number;
}

interface EventRow {
  id: string;
  content_hash: string;
  scope: string;
  cls: MailClass;
  previous: MailClass | null;
  payload: Buffer;
  created_at: Date;
}

const EVENT_COLUMNS = 'id, content_hash, scope, cls, previous, payload, created_at';

function toEvent(row: EventRow): LearnEvent {
  return {
    id: BigInt(row.id),
    contentHash: row.content_hash,
    scope: row.scope,
    cls: row.cls,
    previous: row.previous,
    user: row.scope.startsWith('user:') ? row.scope.slice('user:'.length) : null,
    payload: row.payload,
    createdAt: row.created_at,
  };
}

/** 0x6365636d = 'cecm': serializes activations per schema (see the header). */
const ACTIVATE_LOCK = `SELECT pg_advisory_xact_lock(x'6365636d'::int, hashtext(current_schema()))`;

type Queryable = Pick<pg.PoolClient, 'query'>;

export class PgModelStore {
  constructor(private readonly pool: pg.Pool) {}

  /** Run `fn` in one transaction; a connection that failed mid-way is discarded, not pooled. */
  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    // pg emits `error` on a checked-out client whose server goes away (even mid-query, besides
    // rejecting the query), and the pool only listens while the client is idle: unhandled, it
    // would crash the process.
    const onError = (err: Error): void => void (broken ??= err);
    client.on('error', onError);
    try {
      await client.query(begin);
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      // Our own refusals leave a healthy connection; anything else may have broken it.
      if (!(err instanceof ModelNotFoundError)) broken = err as Error;
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  /** Store a snapshot (an encoded container, verified first); returns its version. */
  async saveModel(blob: Buffer, opts: SaveModelOptions): Promise<number> {
    const report = verifyModel(blob);
    if (!report.ok) throw new ModelFormatError(report.problems);
    if (typeof opts.lastEventId !== 'bigint' || opts.lastEventId < 0n) throw new RangeError('lastEventId must be a bigint >= 0');
    const sha256 = createHash('sha256').update(blob).digest('hex');
    return this.tx(async (c) => {
      const { rows } = await c.query<{ version: number }>(
        `INSERT INTO classifier_models (blob, sha256, sections, last_event_id, note) VALUES ($1, $2, $3, $4, $5) RETURNING version`,
        [blob, sha256, JSON.stringify(report.sections), opts.lastEventId.toString(), opts.note ?? null],
      );
      const version = rows[0]!.version;
      await c.query(ACTIVATE_LOCK);
      const active = await c.query('SELECT 1 FROM classifier_models WHERE active');
      if (opts.activate || active.rowCount === 0) await this.switchTo(c, version);
      return version;
    });
  }

  /** Make `version` the active one; subscribers load it on the NOTIFY. */
  async activate(version: number): Promise<void> {
    await this.tx(async (c) => {
      await c.query(ACTIVATE_LOCK);
      await this.switchTo(c, version);
    });
  }

  /** Two statements: one UPDATE flipping both rows could trip the one-active index mid-way. */
  private async switchTo(c: Queryable, version: number): Promise<void> {
    const exists = await c.query('SELECT 1 FROM classifier_models WHERE version = $1', [version]);
    if (exists.rowCount === 0) throw new ModelNotFoundError(`model version ${version} does not exist`);
    await c.query('UPDATE classifier_models SET active = false WHERE active AND version <> $1', [version]);
    await c.query('UPDATE classifier_models SET active = true WHERE version = $1 AND NOT active', [version]);
  }

  async loadActive(): Promise<ActiveModel | null> {
    const { rows } = await this.pool.query<{ version: number; blob: Buffer; last_event_id: string }>(
      'SELECT version, blob, last_event_id FROM classifier_models WHERE active',
    );
    const row = rows[0];
    return row ? { version: row.version, blob: row.blob, lastEventId: BigInt(row.last_event_id) } : null;
  }

  /** Newest first, without the blobs. */
  async listVersions(): Promise<ModelVersion[]> {
    const { rows } = await this.pool.query<{
      version: number;
      created_at: Date;
      sha256: string;
      bytes: number;
      sections: SectionInfo[];
      last_event_id: string;
      note: string | null;
      active: boolean;
    }>(
      `SELECT version, created_at, sha256, octet_length(blob) AS bytes, sections, last_event_id, note, active
       FROM classifier_models ORDER BY version DESC`,
    );
    return rows.map((r) => ({
      version: r.version,
      createdAt: r.created_at,
      sha256: r.sha256,
      bytes: r.bytes,
      sections: r.sections,
      lastEventId: BigInt(r.last_event_id),
      note: r.note,
      active: r.active,
    }));
  }

  /** The stored container of `version` (default: the active one). */
  async exportModel(version?: number): Promise<Buffer> {
    const { rows } = await this.pool.query<{ blob: Buffer }>(
      version === undefined ? 'SELECT blob FROM classifier_models WHERE active' : 'SELECT blob FROM classifier_models WHERE version = $1',
      version === undefined ? [] : [version],
    );
    if (!rows[0]) throw new ModelNotFoundError(version === undefined ? 'no model is active' : `model version ${version} does not exist`);
    return rows[0].blob;
  }

  /** Verify and store an exported container; throws ModelFormatError (every problem listed) first. */
  async importModel(buf: Buffer, opts: ImportModelOptions = {}): Promise<number> {
    const report = verifyModel(buf);
    if (!report.ok) throw new ModelFormatError(report.problems);
    const lastEventId = opts.lastEventId ?? (await this.lastEventId());
    return this.saveModel(buf, { lastEventId, note: opts.note ?? 'imported', activate: opts.activate ?? false });
  }

  /** Delete inactive versions except the newest `keep`; returns how many were deleted. */
  async pruneModels(keep: number): Promise<number> {
    const { rowCount } = await this.pool.query(
      `DELETE FROM classifier_models WHERE NOT active AND version NOT IN (SELECT version FROM classifier_models ORDER BY version DESC LIMIT $1)`,
      [Math.max(0, Math.floor(keep))],
    );
    return rowCount ?? 0;
  }

  /** Idempotent learn; see the header. One transaction; safe against concurrent calls. */
  async recordLearn(req: LearnRequest): Promise<LearnResult> {
    const scope = req.scope ?? '';
    if (!HASH.test(req.contentHash)) throw new LearnInputError('contentHash must be a lower-case hex SHA-256');
    if (req.cls !== 'spam' && req.cls !== 'ham') throw new LearnInputError(`class must be spam or ham, got ${JSON.stringify(req.cls)}`);
    if (!SCOPE.test(scope)) throw new LearnInputError(`scope ${JSON.stringify(scope)} is not '', 'user:NAME' or 'domain:NAME'`);
    if (!Buffer.isBuffer(req.payload)) throw new LearnInputError('payload must be a Buffer');
    return this.tx(async (c) => {
      const event = async (previous: MailClass | null): Promise<bigint> => {
        const { rows } = await c.query<{ id: string }>(
          'INSERT INTO classifier_events (content_hash, scope, cls, previous, payload) VALUES ($1, $2, $3, $4, $5) RETURNING id',
          [req.contentHash, scope, req.cls, previous, req.payload],
        );
        return BigInt(rows[0]!.id);
      };
      // A second writer of the same key waits here for the first to commit, then sees its row.
      for (let attempt = 0; attempt < 3; attempt++) {
        const inserted = await c.query(
          `INSERT INTO classifier_learned (content_hash, scope, cls) VALUES ($1, $2, $3) ON CONFLICT (content_hash, scope) DO NOTHING RETURNING cls`,
          [req.contentHash, scope, req.cls],
        );
        if (inserted.rowCount === 1) return { status: 'learned', eventId: await event(null) };
        const { rows } = await c.query<{ cls: MailClass }>(
          'SELECT cls FROM classifier_learned WHERE content_hash = $1 AND scope = $2 FOR UPDATE',
          [req.contentHash, scope],
        );
        const old = rows[0]?.cls;
        if (old === undefined) continue; // deleted between the two statements: insert again
        if (old === req.cls) return { status: 'duplicate' };
        await c.query('UPDATE classifier_learned SET cls = $3, updated_at = now() WHERE content_hash = $1 AND scope = $2', [
          req.contentHash,
          scope,
          req.cls,
        ]);
        return { status: 'relearned', eventId: await event(old), previous: old };
      }
      throw new Error('classifier_learned row keeps disappearing: concurrent deletes?');
    });
  }

  /** Events with id > afterId, in id order. */
  async eventsSince(afterId: bigint, limit = 1000, db: Queryable = this.pool): Promise<LearnEvent[]> {
    const { rows } = await db.query<EventRow>(`SELECT ${EVENT_COLUMNS} FROM classifier_events WHERE id > $1 ORDER BY id LIMIT $2`, [
      afterId.toString(),
      limit,
    ]);
    return rows.map(toEvent);
  }

  /** The newest event id ever drawn (0n: none), pruned events included. */
  async lastEventId(): Promise<bigint> {
    const { rows } = await this.pool.query<{ id: string }>(
      'SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS id FROM classifier_events_id_seq',
    );
    return BigInt(rows[0]?.id ?? 0);
  }

  /**
   * Compaction after a snapshot: delete events with id < beforeId, but never one the active model
   * does not include (a process starting later must still replay it). Returns how many went.
   */
  async pruneEvents(beforeId: bigint): Promise<number> {
    const { rowCount } = await this.pool.query(
      `DELETE FROM classifier_events
       WHERE id < $1 AND id <= coalesce((SELECT last_event_id FROM classifier_models WHERE active), 0)`,
      [beforeId.toString()],
    );
    return rowCount ?? 0;
  }

  /**
   * For subscribers: in one REPEATABLE READ snapshot, the active version (with its blob when it is
   * new to the caller), then the events after whichever model the caller will hold. One snapshot,
   * so an activation plus pruning between two reads cannot hand out events the model lacks.
   */
  async readUpdates(known: KnownState, limit = 1000): Promise<Updates> {
    return this.tx(async (c) => {
      const { rows } = await c.query<{ version: number; last_event_id: string }>(
        'SELECT version, last_event_id FROM classifier_models WHERE active',
      );
      const active = rows[0];
      let model: ActiveModel | null = null;
      if (active && active.version !== known.version && active.version !== known.skipVersion) {
        const blob = await c.query<{ blob: Buffer }>('SELECT blob FROM classifier_models WHERE version = $1', [active.version]);
        model = { version: active.version, blob: blob.rows[0]!.blob, lastEventId: BigInt(active.last_event_id) };
      }
      const events = await this.eventsSince(model ? model.lastEventId : known.afterId, limit, c);
      return { activeVersion: active?.version ?? null, model, events };
    }, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  }
}
