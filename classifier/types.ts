/**
 * Contracts between the classifier's parts. Each part lives in its own folder and depends only on
 * these types, so parts can be tested, measured and switched off one at a time:
 *
 *   raw bytes ─ mime/ ─▶ ParsedMessage ─ features/ ─▶ MessageFeatures ─┬▶ bayes/      ─▶ ComponentScore
 *                                                                      ├▶ esn/        ─▶ ComponentScore
 *                                                                      ├▶ membranes/  ─▶ ComponentScore
 *                                                                      └▶ affect/     ─▶ ComponentScore
 *                                         combine/ (weighted or stacked) ─▶ Classification
 */

/** 'spam' = 1, 'ham' = 0 in every numeric context. */
export type MailClass = 'spam' | 'ham';

// ───────────────────────────── MIME ─────────────────────────────

export interface ParseLimits {
  /** Bytes of the raw message read at all; the rest is ignored (stats.truncated). */
  maxBytes: number;
  /** Header block bytes per entity. */
  maxHeaderBytes: number;
  /** MIME entities (parts) visited. */
  maxParts: number;
  /** Multipart nesting depth. */
  maxDepth: number;
}

export interface HeaderLine {
  /** Lower-case field name. */
  name: string;
  /** Unfolded value, RFC 2047 encoded-words decoded. */
  value: string;
}

export interface Attachment {
  /** Lower-case media type, e.g. "application/pdf". */
  contentType: string;
  filename?: string;
  /** Decoded size in bytes (or the encoded size when not decoded). */
  size: number;
}

export interface ParsedMessage {
  /** Top-level header fields in order. */
  headers: HeaderLine[];
  /** Decoded text/plain bodies, in order. */
  textParts: string[];
  /** Decoded text/html bodies, in order (raw HTML). */
  htmlParts: string[];
  attachments: Attachment[];
  stats: {
    bytes: number;
    parts: number;
    depth: number;
    /** The input hit one of the limits. */
    truncated: boolean;
    /** A charset the decoder did not know (decoded as latin1 instead). */
    badCharset: boolean;
    /** Structural problems seen (missing boundary end, bad base64, …). */
    defects: string[];
  };
}

// ─────────────────────────── Features ───────────────────────────

/**
 * 64-bit token hashes as [hi0, lo0, hi1, lo1, …] pairs of unsigned 32-bit halves. Pairs of uint32
 * instead of BigInt because BigInt arithmetic is ~20× slower and these are hot.
 */
export type TokenHashes = Uint32Array;

export interface FeatureOptions {
  onegrams: boolean;
  twograms: boolean;
  threegrams: boolean;
  /** Word tokens read from the body text (Attention scales this). */
  maxBodyTokens: number;
  /** Characters of the decoded text kept for affect analysis. */
  maxTextChars: number;
}

export interface MessageFeatures {
  /** Unique token hashes of the whole message (Bayes, membranes use these). */
  tokens: TokenHashes;
  /**
   * The token stream in reading order, grouped into steps for the reservoir: step i covers
   * tokens steps[i]..steps[i+1]-1 of `sequence`.
   */
  sequence: TokenHashes;
  steps: Uint32Array;
  /** Human-readable tokens, kept only when asked for (classify --json, tests), else empty. */
  debugTokens?: string[];
  /** Decoded visible text (capped), for affect analysis. */
  text: string;
  subject: string;
  fromDomain?: string;
  replyToDomain?: string;
  urls: string[];
  urlDomains: string[];
  /** What the milter's Authentication-Results (ours) said: "pass" | "fail" | "none" | … per method. */
  auth: { spf?: string; dkim?: string; dmarc?: string; arc?: string };
  html: { tags: number; hiddenTextChars: number; textChars: number };
  attachmentTypes: string[];
  /** Numeric message facts in [0,1]-ish ranges, named, for rules and the stacker. */
  numeric: Record<string, number>;
}

// ─────────────────────────── Components ───────────────────────────

export interface ComponentScore {
  /** Component name: "bayes", "reservoir", "membranes", "affect". */
  name: string;
  /** Spam probability in [0,1]; 0.5 = no opinion. */
  probability: number;
  /** False when the component abstains (e.g. Bayes below its minimum of learned messages). */
  voted: boolean;
  /** Short, human-readable reasons (top tokens, fired rules, emotions). */
  details?: Record<string, unknown>;
}

/** A part of the model that scores messages and learns from labelled ones. */
export interface Component {
  readonly name: string;
  score(features: MessageFeatures): ComponentScore;
  /** Learn one message; `weight` -1 unlearns (used when a message changes class). */
  learn(features: MessageFeatures, cls: MailClass, weight?: 1 | -1): void;
}

// ─────────────────────────── Decision ───────────────────────────

export type SpamVerdict = 'inbox' | 'junk' | 'reject';

export interface Classification {
  /** Combined spam probability in [0,1]. */
  score: number;
  verdict: SpamVerdict;
  components: ComponentScore[];
  /** Each component's share of the final log-odds, for `classify` and X-Spam-Status. */
  contributions: Record<string, number>;
  /** Milliseconds spent, parse included. */
  ms: number;
}
