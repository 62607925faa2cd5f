/**
 * The aliases table: Postfix's virtual_alias_maps (postfix/pgsql-virtual-alias-maps.cf). One row
 * per source and destination; several rows with one source deliver to each destination. A source
 * `@domain` is the catch-all for addresses of that domain with neither an alias nor an enabled
 * account (the map answers an enabled account with its own address, so a catch-all never swallows
 * one; a disabled account's mail goes to the catch-all, see the map file for why).
 */
import type pg from 'pg';
import { aliasSource, destinationAddress, normaliseAddress } from './address.ts';
import { isUniqueViolation } from './repository.ts';

export class AliasExistsError extends Error {
  constructor(
    readonly source: string,
    readonly destination: string,
  ) {
    super(`the alias ${source} → ${destination} already exists`);
    this.name = 'AliasExistsError';
  }
}

export class NoSuchAliasError extends Error {
  constructor(
    readonly source: string,
    readonly destination: string,
  ) {
    super(`there is no alias ${source} → ${destination}`);
    this.name = 'NoSuchAliasError';
  }
}

/**
 * Where an alias delivers, as far as this database knows:
 * - `account`: an enabled account;
 * - `disabled`: a disabled account (Postfix refuses that mail);
 * - `alias`: the source of other aliases (expanded again);
 * - `unknown`: an address in one of our domains that is neither, so its mail bounces;
 * - `external`: another domain's address, relayed there.
 */
export type DestinationKind = 'account' | 'disabled' | 'alias' | 'unknown' | 'external';

export interface Alias {
  source: string;
  destination: string;
  kind: DestinationKind;
}

/** An alias and what its parts are, for the warnings `account alias add` prints. */
export interface AddedAlias extends Alias {
  /** The source is also an account: virtual_alias_maps wins, so only the destinations get its mail. */
  sourceIsAccount: boolean;
}

// Domains with accounts or alias sources are ours (pgsql-virtual-mailbox-domains.cf asks the same).
const KIND = `CASE
    WHEN a.enabled THEN 'account'
    WHEN a.address IS NOT NULL THEN 'disabled'
    WHEN EXISTS (SELECT 1 FROM aliases s WHERE s.source = al.destination) THEN 'alias'
    WHEN EXISTS (SELECT 1 FROM accounts d WHERE split_part(d.address, '@', 2) = split_part(al.destination, '@', 2))
      OR EXISTS (SELECT 1 FROM aliases d WHERE split_part(d.source, '@', 2) = split_part(al.destination, '@', 2)) THEN 'unknown'
    ELSE 'external' END`;

const selectAliases = (extra = ''): string =>
  `SELECT al.source, al.destination, ${KIND} AS kind${extra ? `, ${extra}` : ''} FROM aliases al LEFT JOIN accounts a ON a.address = al.destination`;

/** Adds source → destination. InvalidAddressError for a malformed one, AliasExistsError for a repeat. */
export async function addAlias(pool: pg.Pool, sourceInput: string, destinationInput: string): Promise<AddedAlias> {
  const source = aliasSource(sourceInput);
  const destination = destinationAddress(destinationInput);
  try {
    await pool.query('INSERT INTO aliases (source, destination) VALUES ($1, $2)', [source, destination]);
  } catch (err) {
    if (isUniqueViolation(err)) throw new AliasExistsError(source, destination);
    throw err;
  }
  const { rows } = await pool.query<{ kind: DestinationKind; source_is_account: boolean }>(
    `${selectAliases('EXISTS (SELECT 1 FROM accounts WHERE address = al.source) AS source_is_account')} WHERE al.source = $1 AND al.destination = $2`,
    [source, destination],
  );
  return { source, destination, kind: rows[0]!.kind, sourceIsAccount: rows[0]!.source_is_account };
}

export async function removeAlias(pool: pg.Pool, sourceInput: string, destinationInput: string): Promise<void> {
  const source = normaliseAddress(sourceInput);
  const destination = normaliseAddress(destinationInput);
  const { rowCount } = await pool.query('DELETE FROM aliases WHERE source = $1 AND destination = $2', [source, destination]);
  if (!rowCount) throw new NoSuchAliasError(source, destination);
}

/** Every alias (or those of one domain: sources in it), by source domain, source, destination. */
export async function listAliases(pool: pg.Pool, opts: { domain?: string } = {}): Promise<Alias[]> {
  const where = opts.domain === undefined ? '' : `WHERE split_part(al.source, '@', 2) = $1`;
  const { rows } = await pool.query<Alias>(
    `${selectAliases()} ${where} ORDER BY split_part(al.source, '@', 2), al.source, al.destination`,
    opts.domain === undefined ? [] : [normaliseAddress(opts.domain).replace(/^@/, '')],
  );
  return rows;
}
