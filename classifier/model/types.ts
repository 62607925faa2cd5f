/**
 * Contracts of model storage and the learn log. The classifier proper (bayes/, esn/, membranes/,
 * affect/, combine/) is written separately, so nothing here knows what a section contains: a
 * snapshot is a set of named opaque buffers, a learn event carries an opaque payload, and only the
 * classifier interprets either.
 */
import type { MailClass } from '../types.ts';

/**
 * A model snapshot: named sections ("bayes", "reservoir", "membranes", "affect", "stacker",
 * "meta" as JSON, …) in the order they are written. A Map rather than a Record because an object's
 * key order is not insertion order for integer-like keys, and the container must round-trip
 * byte for byte.
 */
export type ModelSections = Map<string, Buffer>;

/** One section as listed in a container's table (and in classifier_models.sections). */
export interface SectionInfo {
  name: string;
  bytes: number;
  /** Hex SHA-256 of the section's bytes. */
  sha256: string;
}

export interface DecodedModel {
  formatVersion: number;
  /** Views into the decoded buffer (no copy): copy them if the input buffer is reused. */
  sections: ModelSections;
  info: SectionInfo[];
  /** Hex SHA-256 stored in the trailer: of every byte before the trailer. */
  sha256: string;
}

/** What verifyModel found; `ok` exactly when decodeModel would succeed. */
export interface ModelReport {
  ok: boolean;
  formatVersion?: number;
  bytes: number;
  sections: SectionInfo[];
  /** One line per problem, in file order; empty when ok. */
  problems: string[];
}

/** A stored model version, as listVersions() returns it (without the blob). */
export interface ModelVersion {
  version: number;
  createdAt: Date;
  /** Hex SHA-256 of the whole stored blob (what `sha256sum` of an export prints). */
  sha256: string;
  bytes: number;
  sections: SectionInfo[];
  /** The newest learn event this snapshot already includes (0n: none). */
  lastEventId: bigint;
  note: string | null;
  active: boolean;
}

export interface ActiveModel {
  version: number;
  /** The encoded container (decode with decodeModel). */
  blob: Buffer;
  lastEventId: bigint;
}

/**
 * Where a learn applies: '' for the global model, 'user:alice' or 'domain:example.com' for a
 * per-user or per-domain one. The same message may be learned once per scope.
 */
export type LearnScope = string;

export interface LearnEvent {
  id: bigint;
  /** Hex SHA-256 of the raw message. */
  contentHash: string;
  scope: LearnScope;
  cls: MailClass;
  /** The class the message was learned as before (relearn: unlearn that first), or null. */
  previous: MailClass | null;
  /** The user part of a 'user:…' scope, else null. */
  user: string | null;
  /** The classifier's feature payload: everything it needs to apply the update. */
  payload: Buffer;
  createdAt: Date;
}

export interface LearnRequest {
  contentHash: string;
  scope?: LearnScope;
  cls: MailClass;
  payload: Buffer;
}

export type LearnResult =
  | { status: 'learned'; eventId: bigint }
  | { status: 'relearned'; eventId: bigint; previous: MailClass }
  | { status: 'duplicate' };

/** One consistent read for a subscriber: a newer active model (if any), then the events after it. */
export interface Updates {
  /** The active version now (null: no model stored yet). */
  activeVersion: number | null;
  /** Set when the active version differs from the caller's and is not the one it rejected. */
  model: ActiveModel | null;
  /** In id order, after model.lastEventId when a model is returned, else after the caller's id. */
  events: LearnEvent[];
}
