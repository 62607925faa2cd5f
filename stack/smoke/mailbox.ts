/**
 * IMAP for the smoke test (imapflow): find this run's messages by their `X-Ceerion-Smoke` header
 * (IMAP SEARCH HEADER is a substring match, so a prefix finds a whole batch), read them whole, and
 * remove the rate-limit batch afterwards so a test account does not fill up with 100 messages per run.
 *
 * One connection per check: checks run concurrently, and imapflow serialises a connection's
 * mailbox selection with a lock, so sharing one would make every check wait for the slowest.
 */
import { ImapFlow } from 'imapflow';
import { eventually, need, type SmokeContext } from './context.ts';

export const SMOKE_HEADER = 'X-Ceerion-Smoke';

export interface StoredMessage {
  mailbox: string;
  uid: number;
  raw: string;
}

export async function openImap(ctx: SmokeContext): Promise<ImapFlow> {
  const imap = need(ctx.state.endpoints.imap, 'IMAP');
  const client = new ImapFlow({
    host: imap.host,
    port: imap.port,
    secure: false,
    // Plaintext LOGIN on loopback is what the private Dovecot allows; never over a network.
    doSTARTTLS: false,
    auth: { user: ctx.creds.user, pass: ctx.creds.password },
    logger: false,
    connectionTimeout: ctx.stepTimeoutMs,
    greetingTimeout: ctx.stepTimeoutMs,
  });
  // imapflow emits 'error' on socket problems; unhandled it would end the process.
  client.on('error', () => {});
  await client.connect();
  return client;
}

export async function closeImap(client: ImapFlow): Promise<void> {
  await client.logout().catch(() => client.close());
}

/** UIDs of messages whose smoke header contains `marker`, in `mailbox` (none if it does not exist). */
export async function findUids(client: ImapFlow, mailbox: string, marker: string): Promise<number[]> {
  let lock;
  try {
    lock = await client.getMailboxLock(mailbox);
  } catch {
    return []; // Junk is created by the first Sieve fileinto: absent until then.
  }
  try {
    const uids = await client.search({ header: { [SMOKE_HEADER]: marker } }, { uid: true });
    return uids || [];
  } finally {
    lock.release();
  }
}

export async function fetchRaw(client: ImapFlow, mailbox: string, uid: number): Promise<string> {
  const lock = await client.getMailboxLock(mailbox);
  try {
    const m = await client.fetchOne(String(uid), { source: true }, { uid: true });
    if (!m || !m.source) throw new Error(`UID ${uid} vanished from ${mailbox}`);
    return m.source.toString('latin1');
  } finally {
    lock.release();
  }
}

/** Waits until the message with `marker` is in one of `mailboxes`; resolves with the first found. */
export async function waitForMessage(ctx: SmokeContext, client: ImapFlow, marker: string, mailboxes: string[], timeoutMs = ctx.stepTimeoutMs): Promise<StoredMessage> {
  return eventually(`message ${marker} in ${mailboxes.join(' or ')}`, timeoutMs, async () => {
    for (const mailbox of mailboxes) {
      const [uid] = await findUids(client, mailbox, marker);
      if (uid !== undefined) return { mailbox, uid, raw: await fetchRaw(client, mailbox, uid) };
    }
    return undefined;
  }, 300);
}

/** Deletes (and expunges) every message in `mailbox` whose smoke header contains `marker`. */
export async function deleteMessages(client: ImapFlow, mailbox: string, marker: string): Promise<number> {
  const uids = await findUids(client, mailbox, marker);
  if (uids.length === 0) return 0;
  const lock = await client.getMailboxLock(mailbox);
  try {
    await client.messageDelete(uids.join(','), { uid: true });
    return uids.length;
  } finally {
    lock.release();
  }
}
