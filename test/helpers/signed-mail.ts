/** Test mail that is really signed: an RSA key, its DKIM TXT record, and a message split for MilterClient. */
import { generateKeyPairSync } from 'node:crypto';
import { dkimSign } from 'mailauth';
import { messageFromRaw, type MessageSpec } from '../../milter/client/milter-client.ts';

export interface TestKey {
  privateKey: string;
  /** The TXT record as DNS hands it over: chunks of at most 255 characters. */
  txt: string[];
}

export function rsaKey(): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const p = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  const record = `v=DKIM1; k=rsa; p=${p}`;
  return { privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), txt: record.match(/.{1,255}/g)! };
}

export async function sign(raw: string, domain: string, selector: string, key: TestKey): Promise<string> {
  // mailauth 4 reads keys from signatureData; its bundled types want the older flat form.
  const opts = { canonicalization: 'relaxed/relaxed', signatureData: [{ signingDomain: domain, selector, privateKey: key.privateKey }] };
  const res = await dkimSign(raw, opts as unknown as Parameters<typeof dkimSign>[1]);
  if (res.errors?.length || !res.signatures.startsWith('DKIM-Signature:')) throw new Error(`signing failed: ${JSON.stringify(res.errors)}`);
  return res.signatures + raw;
}

/** Split a raw CRLF message into the header fields and body a milter client sends. */
export const toSpec = (raw: string, from: string, rcpts = ['<bob@example.org>']): MessageSpec => messageFromRaw(raw, { from, rcpts });

export const message = (from: string, subject = 'auth test') =>
  `From: Alice <${from}>\r\nTo: bob@example.org\r\nSubject: ${subject}\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${Math.random().toString(36).slice(2)}@example.com>\r\n\r\nHello Bob,\r\nthis is a test.\r\n`;
