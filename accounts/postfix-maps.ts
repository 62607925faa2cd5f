/**
 * The Postfix `pgsql:` map files of accounts/postfix/, filled in from the suite's own database
 * settings (database.url, database.schema), and the main.cf lines that use them.
 *
 * The values go into Postfix's "name = value" syntax (Postfix 3.7's dict_pgsql, pgsql_table(5)):
 * a value runs to the end of its line with surrounding blanks trimmed, and `hosts` is split at
 * blanks and commas. So each value is checked to survive that: no control characters, no blanks at
 * either end, none at all in a host. Postfix connects with hosts + user + password + dbname
 * (libpq's PQsetdbLogin); a URL with settings that form has no room for (sslmode, an IPv6 literal)
 * is refused, with the advice to write `hosts = postgresql://…` by hand.
 */
import { chmod, chown, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { DatabaseConfig } from '../core/config/policyd.ts';

export const POSTFIX_MAPS_DIR = path.join(import.meta.dirname, 'postfix');

/** Each shipped file and the main.cf parameter that reads it, in the order main.cf lists them. */
export const POSTFIX_MAPS = [
  { file: 'pgsql-virtual-mailbox-domains.cf', parameter: 'virtual_mailbox_domains' },
  { file: 'pgsql-virtual-mailbox-maps.cf', parameter: 'virtual_mailbox_maps' },
  { file: 'pgsql-virtual-alias-maps.cf', parameter: 'virtual_alias_maps' },
] as const;

export class PostfixMapsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PostfixMapsError';
  }
}

export interface PostfixMapValues {
  PG_HOSTS: string;
  PG_USER: string;
  PG_PASSWORD: string;
  PG_DBNAME: string;
  PG_SCHEMA: string;
}

const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;

/** A value Postfix reads back exactly: one line, nothing its parser trims. */
function plainValue(name: string, value: string, opts: { empty?: boolean; blanks?: boolean } = {}): string {
  if (!value && !opts.empty) throw new PostfixMapsError(`database.url has no ${name}`);
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new PostfixMapsError(`the database ${name} contains a control character, which a Postfix map file cannot hold`);
  if (value !== value.trim()) throw new PostfixMapsError(`the database ${name} starts or ends with a blank, which Postfix would drop`);
  if (opts.blanks === false && /[\s,]/.test(value)) throw new PostfixMapsError(`the database ${name} contains a blank or a comma, which Postfix would split`);
  return value;
}

/** The placeholder values for `database`: inet:HOST:PORT (or unix:/socket/dir), user, password, dbname, schema. */
export function postfixMapValues(database: DatabaseConfig): PostfixMapValues {
  if (!SCHEMA.test(database.schema)) throw new PostfixMapsError(`database.schema ${JSON.stringify(database.schema)} is not a lower-case SQL identifier`);
  let url: URL;
  try {
    url = new URL(database.url);
  } catch {
    throw new PostfixMapsError('database.url is not a URL');
  }
  if (!/^postgres(ql)?:$/.test(url.protocol)) throw new PostfixMapsError(`database.url is not a postgres:// URL (${url.protocol})`);
  const byHand = 'write `hosts = postgresql://…` into the files by hand instead (Postfix then takes everything from that URI)';
  const socketDir = url.searchParams.get('host');
  const others = [...url.searchParams.keys()].filter((k) => k !== 'host');
  if (others.length) throw new PostfixMapsError(`database.url sets ${others.join(', ')}, which Postfix's host list cannot express: ${byHand}`);
  if (url.hostname.startsWith('[')) throw new PostfixMapsError(`database.url names an IPv6 address, which Postfix's host list cannot express: ${byHand}`);
  const port = url.port || '5432';
  let hosts: string;
  if (socketDir !== null) {
    if (!socketDir.startsWith('/')) throw new PostfixMapsError(`database.url: host=${socketDir} is not a socket directory`);
    hosts = `unix:${plainValue('socket directory', socketDir, { blanks: false })}`;
  } else {
    hosts = `inet:${plainValue('host', decodeURIComponent(url.hostname) || '127.0.0.1', { blanks: false })}:${port}`;
  }
  return {
    PG_HOSTS: hosts,
    PG_USER: plainValue('user', decodeURIComponent(url.username) || 'postgres'),
    PG_PASSWORD: plainValue('password', decodeURIComponent(url.password), { empty: true }),
    PG_DBNAME: plainValue('database name', decodeURIComponent(url.pathname.slice(1)) || 'postgres'),
    PG_SCHEMA: database.schema,
  };
}

/**
 * Fills @NAME@ placeholders outside comments; one without a value is an error naming the file.
 * Checked on the template, so a password that happens to contain `@X@` is not mistaken for one.
 */
export function fillPlaceholders(file: string, text: string, values: Record<string, string>): string {
  const comment = /^\s*#/;
  return text
    .split('\n')
    .map((line) =>
      comment.test(line)
        ? line
        : line.replace(/@([A-Z_]+)@/g, (_, name: string) => {
            const value = values[name];
            if (value === undefined) throw new PostfixMapsError(`${path.basename(file)}: placeholder @${name}@ not substituted`);
            return value;
          }),
    )
    .join('\n');
}

export async function renderPostfixMap(file: (typeof POSTFIX_MAPS)[number]['file'], values: PostfixMapValues): Promise<string> {
  const source = path.join(POSTFIX_MAPS_DIR, file);
  return fillPlaceholders(source, await readFile(source, 'utf8'), { ...values });
}

/** The main.cf lines for the files in `dir`. */
export function mainCfLines(dir: string): string {
  return `${POSTFIX_MAPS.map((m) => `${m.parameter} = pgsql:${path.join(dir, m.file)}`).join('\n')}\nrecipient_delimiter = +\n`;
}

/** gid of the `postfix` group, when there is one (its daemons read the maps). */
function postfixGid(): number | undefined {
  try {
    const line = readFileSync('/etc/group', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('postfix:'));
    const gid = Number(line?.split(':')[2]);
    return Number.isInteger(gid) ? gid : undefined;
  } catch {
    return undefined;
  }
}

export interface WrittenMaps {
  files: string[];
  /** Whether the files were given to group postfix (only root can, and only when it exists). */
  groupPostfix: boolean;
}

/**
 * Writes the three files into `dir` (created 0750 if missing), mode 0640: they hold the database
 * password. As root they go to group postfix (root:postfix 0640, as for any Postfix map holding a
 * password). An existing file is replaced.
 */
export async function writePostfixMaps(dir: string, database: DatabaseConfig): Promise<WrittenMaps> {
  const values = postfixMapValues(database);
  const rendered = await Promise.all(POSTFIX_MAPS.map(async (m) => ({ file: path.join(dir, m.file), text: await renderPostfixMap(m.file, values) })));
  await mkdir(dir, { recursive: true, mode: 0o750 });
  const gid = process.getuid?.() === 0 ? postfixGid() : undefined;
  for (const { file, text } of rendered) {
    // Written aside and renamed over: Postfix never reads half a file, and the password is never
    // in a file more readable than 0640, whatever mode an older copy had.
    const temp = `${file}.${process.pid}.tmp`;
    await writeFile(temp, text, { mode: 0o600, flag: 'wx' });
    try {
      if (gid !== undefined) await chown(temp, 0, gid);
      await chmod(temp, 0o640);
      await rename(temp, file);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }
  return { files: rendered.map((r) => r.file), groupPostfix: gid !== undefined };
}
