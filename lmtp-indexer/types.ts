/**
 * Shapes shared by the LMTP indexer's parts: what the parser reads from a message, the index
 * record written per recipient, per-recipient delivery results, and the events clients receive.
 */

export interface AttachmentInfo {
  /** File name from Content-Disposition / Content-Type name, decoded; null when there is none. */
  name: string | null;
  contentType: string;
  /** Decoded bytes. */
  size: number;
}

/** What the parser could read from one message; the same for every recipient. */
export interface ParsedMessage {
  messageId: string | null;
  inReplyTo: string | null;
  references: string[];
  fromAddress: string | null;
  fromName: string | null;
  to: string[];
  cc: string[];
  subject: string | null;
  /** Date header as ISO 8601; null when missing or unreadable. */
  sentAt: string | null;
  attachments: AttachmentInfo[];
  /** X-Spam-Score from our milter (when present). */
  spamScore: number | null;
  /** X-Spam-Status first word (`Yes`/`No`). */
  spamStatus: string | null;
  /** The Authentication-Results header our milter added (the first one), raw. */
  authResults: string | null;
  spf: string | null;
  dkim: string | null;
  dmarc: string | null;
  /** Postfix queue id from the top Received header, when it carries one. */
  queueId: string | null;
  /** Plain text for the tsvector: subject, names, addresses, body text; capped at index.maxTextBytes. */
  text: string;
  snippet: string;
  /** Limits hit and unreadable parts, in words an admin understands. */
  problems: string[];
}

/** One row of indexed_messages to be written (or backlogged). */
export interface IndexRecord extends ParsedMessage {
  account: string;
  /** Hex SHA-256 of the message bytes as received. */
  contentSha256: string;
  sizeBytes: number;
  /** ISO 8601. */
  receivedAt: string;
  /** Text search configuration (lmtp.index.language). */
  language: string;
}

/** Dovecot's (or our own) answer for one recipient, passed back to Postfix as is. */
export interface RecipientReply {
  code: number;
  /** Enhanced status code, e.g. `5.2.2`, when the server sent one. */
  enhanced?: string;
  /** Text after the codes, one line. */
  message: string;
}

export type MailEventKind = 'new' | 'flags' | 'move' | 'expunge';

/** What a WebSocket client receives; `seq` is the account's resume cursor. */
export interface MailEvent {
  account: string;
  seq: number;
  kind: MailEventKind;
  /** indexed_messages.id, when the event concerns an indexed message. */
  messageRow: number | null;
  payload: Record<string, unknown>;
  createdAt: string;
}
