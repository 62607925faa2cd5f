/**
 * The domain of the RFC 5322 From address: the domain DMARC aligns on, so the one we sign as
 * (d=). Exactly one From field holding exactly one mailbox, or we do not sign: RFC 5322 3.6 allows
 * one From field, and DMARC receivers reject or ignore mail with several From authors.
 *
 * A small mailbox-list reader (RFC 5322 3.4): display names, quoted strings, comments, angle
 * addresses and groups; enough to find the addresses, not a validator.
 */
import { domainToASCII } from 'node:url';
import type { HeaderField } from '../headers.ts';

export type FromDomain = { domain: string } | { skip: string };

export function fromDomain(headers: readonly HeaderField[]): FromDomain {
  const from = headers.filter((h) => h.name.toLowerCase() === 'from');
  if (from.length === 0) return { skip: 'no From header' };
  if (from.length > 1) return { skip: `${from.length} From headers` };
  const addresses = mailboxAddresses(from[0]!.value);
  if (addresses.length === 0) return { skip: 'From has no address' };
  if (addresses.length > 1) return { skip: `From has ${addresses.length} addresses` };
  const at = addresses[0]!.lastIndexOf('@');
  const raw = at < 0 ? '' : addresses[0]!.slice(at + 1).trim().replace(/\.$/, '');
  // A domain literal ([192.0.2.1]) has no DNS to publish a key in; U-labels become A-labels.
  const domain = raw.startsWith('[') ? '' : domainToASCII(raw.toLowerCase());
  if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)+$/.test(domain)) return { skip: 'From address has no usable domain' };
  return { domain };
}

/** The addr-specs in a mailbox or address list, in order. */
export function mailboxAddresses(value: string): string[] {
  const text = value.replace(/\r?\n/g, '');
  const found: string[] = [];
  let current = '';
  let angle: string | undefined;
  let inAngle = false;
  let quoted = false;
  let comment = 0;
  const add = (c: string) => {
    if (inAngle) angle += c;
    else if (angle === undefined) current += c; // text after a closed <...> is ignored
  };
  const flush = () => {
    const addr = (angle ?? current).trim();
    if (addr) found.push(addr);
    current = '';
    angle = undefined;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (comment > 0) {
      if (c === '\\') i++;
      else if (c === '(') comment++;
      else if (c === ')') comment--;
    } else if (quoted) {
      if (c === '"') quoted = false;
      add(c === '\\' ? (text[++i] ?? '') : c);
    } else if (c === '(') comment = 1;
    else if (c === '"') {
      quoted = true;
      add(c);
    } else if (inAngle) {
      if (c === '>') inAngle = false;
      else add(c);
    } else if (c === '<') {
      inAngle = true;
      angle = '';
    } else if (c === ',' || c === ';') flush();
    else if (c === ':') current = ''; // a group's display name
    else add(c);
  }
  flush();
  return found;
}
