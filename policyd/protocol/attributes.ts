/**
 * The attributes Postfix's smtpd sends in a policy request (SMTPD_POLICY_README, up to Postfix
 * 3.8), and typed readers that tolerate what the README allows: an unavailable value is either
 * missing, empty, or `0` for numbers. Unknown attributes are kept by the codec and ignored here.
 */
import type { PolicyAttributes } from '../types.ts';

/** Each attribute with the Postfix version that first sent it. */
export const POSTFIX_ATTRIBUTES = {
  /** The request type; smtpd's check_policy_service always sends `smtpd_access_policy`. */
  request: '2.1',
  /** The SMTP stage asking: CONNECT, EHLO, HELO, MAIL, RCPT, DATA (also BDAT), END-OF-MESSAGE, VRFY, ETRN. */
  protocol_state: '2.1',
  /** SMTP or ESMTP. */
  protocol_name: '2.1',
  /** The HELO/EHLO argument as the client gave it. */
  helo_name: '2.1',
  /** Postfix queue id; empty before the message has one. */
  queue_id: '2.1',
  /** MAIL FROM address without <>; empty for the null sender. UTF-8 with SMTPUTF8. */
  sender: '2.1',
  /** RCPT TO address; at DATA and END-OF-MESSAGE only when there was exactly one recipient. */
  recipient: '2.1',
  /** Accepted recipients; non-zero only at DATA and END-OF-MESSAGE (meaningful since 2.3). */
  recipient_count: '2.1',
  /** Client IP: dotted quad or IPv6 without brackets. */
  client_address: '2.1',
  /** Verified client hostname, or `unknown`. */
  client_name: '2.1',
  /** Reverse DNS name of the client, unverified, or `unknown`. */
  reverse_client_name: '2.1',
  /** Same value for every request about one message on this connection: counts a message once. */
  instance: '2.1',
  /** SASL mechanism; empty without SASL authentication. */
  sasl_method: '2.2',
  /** SASL login name; empty without SASL authentication. */
  sasl_username: '2.2',
  /** SASL sender from MAIL FROM AUTH=; usually empty. */
  sasl_sender: '2.2',
  /** Size from MAIL FROM SIZE= (0 if none); the real size at END-OF-MESSAGE. */
  size: '2.2',
  /** Client certificate subject CN, xtext-encoded; empty without a verified certificate. */
  ccert_subject: '2.2',
  /** Client certificate issuer CN, xtext-encoded. */
  ccert_issuer: '2.2',
  /** Client certificate fingerprint (smtpd_tls_fingerprint_digest). */
  ccert_fingerprint: '2.2',
  /** TLS protocol, e.g. TLSv1.3; empty for plaintext. */
  encryption_protocol: '2.3',
  /** TLS cipher; empty for plaintext. */
  encryption_cipher: '2.3',
  /** Cipher key size in bits; 0 for plaintext. */
  encryption_keysize: '2.3',
  /** The ETRN argument; only in the ETRN state. */
  etrn_domain: '2.3',
  /** `yes` when smtpd runs under stress (STRESS_README), else empty. */
  stress: '2.5',
  /** Fingerprint of the client certificate's public key. */
  ccert_pubkey_fingerprint: '2.9',
  /** Client TCP port. */
  client_port: '3.0',
  /** smtpd_policy_service_policy_context, or the per-client `policy_context=` setting. */
  policy_context: '3.1',
  /** Local address the client connected to. */
  server_address: '3.2',
  /** Local port the client connected to (25, 587, …). */
  server_port: '3.2',
  /** Postfix's compatibility_level setting, e.g. `3.6`. */
  compatibility_level: '3.8',
  /** Postfix's version, e.g. `3.8.4`. */
  mail_version: '3.8',
} as const;

export type AttributeName = keyof typeof POSTFIX_ATTRIBUTES;

export const ATTRIBUTE_NAMES = Object.keys(POSTFIX_ATTRIBUTES) as AttributeName[];

export function isKnownAttribute(name: string): name is AttributeName {
  return Object.hasOwn(POSTFIX_ATTRIBUTES, name);
}

/** The request type smtpd sends. */
export const SMTPD_ACCESS_POLICY = 'smtpd_access_policy';

export const PROTOCOL_STATES = ['CONNECT', 'EHLO', 'HELO', 'MAIL', 'RCPT', 'DATA', 'END-OF-MESSAGE', 'VRFY', 'ETRN'] as const;
export type ProtocolState = (typeof PROTOCOL_STATES)[number];

const STATES: ReadonlySet<string> = new Set(PROTOCOL_STATES);

/** The value, or undefined when missing or empty (the README's two ways of saying "unavailable"). */
export function text(attrs: PolicyAttributes, name: AttributeName): string | undefined {
  const v = attrs[name];
  return v === undefined || v === '' ? undefined : v;
}

/** The SMTP stage (upper-cased), or undefined when missing or not one Postfix documents. */
export function protocolState(attrs: PolicyAttributes): ProtocolState | undefined {
  const v = attrs.protocol_state?.trim().toUpperCase();
  return v !== undefined && STATES.has(v) ? (v as ProtocolState) : undefined;
}

/** Whether this is smtpd's access policy request (the only kind Postfix's smtpd sends). */
export function isAccessPolicyRequest(attrs: PolicyAttributes): boolean {
  return attrs.request === SMTPD_ACCESS_POLICY;
}

/**
 * A non-negative decimal count, 0 when missing, empty or not a plain number. At most 15 digits,
 * so arithmetic on it (sums of sizes) stays exact.
 */
function count(v: string | undefined): number {
  const t = v?.trim() ?? '';
  return /^\d{1,15}$/.test(t) ? Number(t) : 0;
}

/** Accepted recipients: non-zero only at DATA and END-OF-MESSAGE. */
export function recipientCount(attrs: PolicyAttributes): number {
  return count(attrs.recipient_count);
}

/** Message size in bytes: SIZE= at MAIL/RCPT (0 if none was given), the real size at END-OF-MESSAGE. */
export function messageSize(attrs: PolicyAttributes): number {
  return count(attrs.size);
}

/** TLS key size in bits; 0 for plaintext. */
export function encryptionKeysize(attrs: PolicyAttributes): number {
  return count(attrs.encryption_keysize);
}

/** A port 0–65535, or undefined: unlike a count, a missing port is not port 0. */
function port(v: string | undefined): number | undefined {
  const t = v?.trim() ?? '';
  return /^\d{1,5}$/.test(t) && Number(t) <= 65535 ? Number(t) : undefined;
}

/** Client TCP port (Postfix 3.0+), or undefined when missing or invalid. */
export function clientPort(attrs: PolicyAttributes): number | undefined {
  return port(attrs.client_port);
}

/** Local port the client connected to (Postfix 3.2+), or undefined when missing or invalid. */
export function serverPort(attrs: PolicyAttributes): number | undefined {
  return port(attrs.server_port);
}

/** SASL login, or undefined for an unauthenticated client. */
export function saslUsername(attrs: PolicyAttributes): string | undefined {
  return text(attrs, 'sasl_username');
}

/** True when Postfix reports stress (`stress=yes`). */
export function underStress(attrs: PolicyAttributes): boolean {
  return attrs.stress?.trim().toLowerCase() === 'yes';
}
