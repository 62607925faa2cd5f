/**
 * The Postfix queue id of a message arriving over LMTP, for the log. Postfix's LMTP client sends
 * no XFORWARD or queue id of its own, but the topmost Received header is the one Postfix wrote when
 * it took the message in: `by HOST (Postfix) with ESMTP id 4XyZ1Q2…` (smtpd), or
 * `by HOST (Postfix, from userid 0) id 4XyZ1Q2…` (pickup). With the id in our "delivered" line,
 * `pnpm mail:logs --queue-id ID` follows a message from smtpd through the milter into the index.
 * Only the first Received header is read: a lower one is a previous hop's and names another queue.
 */

/** Postfix queue ids: short hex ids, or long ids (`enable_long_queue_ids`) in base-52 with a `z`. */
const QUEUE_ID = /^[0-9A-F]{6,}$|^[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]+$/;
const POSTFIX_ID = /\(Postfix(?:, from userid \d+)?\)\s+(?:with\s+\S+\s+)?id\s+([0-9A-Za-z]+)\b/i;

/** The queue id from the top Received header, if Postfix wrote it; undefined otherwise. */
export function postfixQueueId(head: Buffer): string | undefined {
  const text = head.toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  const block = end < 0 ? text : text.slice(0, end);
  // The first Received field with its folded continuation lines.
  const m = /(?:^|\n)Received:([^\n]*(?:\n[ \t][^\n]*)*)/i.exec(block);
  if (!m) return undefined;
  const id = POSTFIX_ID.exec(m[1]!.replace(/\r?\n[ \t]+/g, ' '))?.[1];
  return id && QUEUE_ID.test(id) ? id : undefined;
}
