/**
 * What may be an account, an alias source and an alias destination. Everything is lower-cased
 * first (the tables store lower case and Postfix and Dovecot lower their lookup keys), then held to
 * rules stricter than the tables' CHECKs:
 *
 * - An account is a Dovecot login too: its local part uses only Dovecot's default
 *   auth_username_chars (letters, digits, `.`, `-`, `_`). No `+` (the recipient delimiter), no `/`
 *   (the mail home is built from the address), no `%` or `!` (Postfix routing syntax).
 * - An alias source or destination is any dot-atom address (RFC 5322 atext, unquoted); a source may
 *   also be `@domain`, the catch-all for that domain.
 * - Domains are ASCII host names with at least one dot; an international domain is given in its
 *   `xn--` form, so JS and Postfix agree on its lower case (Postfix's pgsql client also talks
 *   LATIN1 to the server: only ASCII keys are sure to match).
 * Commands that change an existing row take any address of the table's shape (existingAddress),
 * so rows written by other tools stay manageable.
 */
export class InvalidAddressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidAddressError';
  }
}

export const normaliseAddress = (address: string): string => address.trim().toLowerCase();

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const ACCOUNT_LOCAL = /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/;
const ATEXT_LOCAL = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;

function checkDomain(domain: string, input: string): void {
  const labels = domain.split('.');
  if (domain.length > 253 || labels.length < 2 || !labels.every((l) => LABEL.test(l)) || /^\d+$/.test(labels.at(-1)!)) {
    const hint = /[^\x00-\x7f]/.test(domain) ? ' (write an international domain in its xn-- form)' : '';
    throw new InvalidAddressError(`${JSON.stringify(input)}: ${JSON.stringify(domain)} is not a domain name such as example.com${hint}`);
  }
}

function split(input: string): { local: string; domain: string; address: string } {
  const address = normaliseAddress(input);
  const at = address.lastIndexOf('@');
  if (at < 0) throw new InvalidAddressError(`${JSON.stringify(input)} is not an address such as user@example.com`);
  return { local: address.slice(0, at), domain: address.slice(at + 1), address };
}

function checkLength(address: string, local: string, input: string): void {
  if (local.length > 64) throw new InvalidAddressError(`${JSON.stringify(input)}: the local part is longer than 64 characters`);
  if (address.length > 254) throw new InvalidAddressError(`${JSON.stringify(input)} is longer than 254 characters`);
}

/** An account address (a mailbox and a Dovecot login), lower case. */
export function accountAddress(input: string): string {
  const { local, domain, address } = split(input);
  if (!ACCOUNT_LOCAL.test(local)) {
    throw new InvalidAddressError(
      `${JSON.stringify(input)} is not an account address: the part before @ may hold letters, digits, '.', '-' and '_' (a '+detail' is added by senders, not stored)`,
    );
  }
  checkDomain(domain, input);
  checkLength(address, local, input);
  return address;
}

/** An alias destination: any unquoted address, local or not, lower case. */
export function destinationAddress(input: string): string {
  const { local, domain, address } = split(input);
  if (!ATEXT_LOCAL.test(local)) throw new InvalidAddressError(`${JSON.stringify(input)} is not an address such as user@example.com`);
  checkDomain(domain, input);
  checkLength(address, local, input);
  return address;
}

/** An alias source: an address, or `@domain` for every address of the domain without its own entry. */
export function aliasSource(input: string): string {
  const { local, domain, address } = split(input);
  if (local === '') {
    checkDomain(domain, input);
    return address;
  }
  return destinationAddress(input);
}

/** Any address of the accounts table's shape (its CHECK), lower case: for rows that already exist. */
export function existingAddress(input: string): string {
  const address = normaliseAddress(input);
  if (!/^[^@\s]+@[^@\s]+$/.test(address)) throw new InvalidAddressError(`${JSON.stringify(input)} is not an address such as user@example.com`);
  return address;
}

/** The domain of an address or of a `@domain` catch-all. */
export const domainOf = (address: string): string => address.slice(address.lastIndexOf('@') + 1);
