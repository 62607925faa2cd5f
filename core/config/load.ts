/**
 * Load the configuration once: defaults ← YAML file ← CEERION_* environment ← command-line flags.
 * Errors name the offending key and value, e.g. `milter.listen = "tcp:1" : expected inet:HOST:PORT …`.
 */
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { ZodError } from 'zod';
import { configSchema, type Config } from './schema.ts';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Tree = Record<string, unknown>;

function isTree(v: unknown): v is Tree {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function getPath(obj: unknown, path: (string | number)[]): unknown {
  let cur = obj;
  for (const key of path) {
    if (!isTree(cur) && !Array.isArray(cur)) return undefined;
    cur = (cur as Tree)[key as string];
  }
  return cur;
}

function setPath(obj: Tree, path: string[], value: unknown): void {
  let cur = obj;
  for (const key of path.slice(0, -1)) {
    if (!isTree(cur[key])) cur[key] = {};
    cur = cur[key] as Tree;
  }
  cur[path.at(-1)!] = value;
}

function deepMerge(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = isTree(v) && isTree(out[k]) ? deepMerge(out[k] as Tree, v) : v;
  return out;
}

const envName = (path: string[]) =>
  'CEERION_' + path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');

/** Every leaf of the defaults, so that CEERION_MILTER_IDLE_TIMEOUT_MS maps to milter.idleTimeoutMs. */
function leaves(tree: Tree, prefix: string[] = []): Array<[string[], unknown]> {
  return Object.entries(tree).flatMap(([k, v]) => (isTree(v) ? leaves(v, [...prefix, k]) : [[[...prefix, k], v]]));
}

function coerce(raw: string, like: unknown, name: string): unknown {
  if (typeof like === 'number') {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n)) throw new ConfigError(`${name} = ${JSON.stringify(raw)}: expected a number`);
    return n;
  }
  if (typeof like === 'boolean') {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new ConfigError(`${name} = ${JSON.stringify(raw)}: expected true or false`);
  }
  if (Array.isArray(like)) return raw.split(',').map((s) => s.trim()).filter(Boolean);
  return raw;
}

/** The conventional variables, used when the CEERION_* one is not set (Docker, Heroku-style hosts). */
const CONVENTIONAL: Array<[string, string[]]> = [
  ['REDIS_URL', ['redis', 'url']],
  ['DATABASE_URL', ['database', 'url']],
];

export function envOverrides(env: NodeJS.ProcessEnv): Tree {
  const defaults = configSchema.parse({}) as Tree;
  const out: Tree = {};
  for (const [name, path] of CONVENTIONAL) if (env[name]) setPath(out, path, env[name]);
  for (const [path, like] of leaves(defaults)) {
    const name = envName(path);
    const raw = env[name];
    if (raw !== undefined) setPath(out, path, coerce(raw, like, name));
  }
  return out;
}

/** CEERION_* variables that name no config key: almost always a typo an admin wants to hear about. */
export function unknownEnvVariables(env: NodeJS.ProcessEnv): string[] {
  const known = new Set(leaves(configSchema.parse({}) as Tree).map(([p]) => envName(p)));
  return Object.keys(env).filter((k) => k.startsWith('CEERION_') && !known.has(k));
}

export function formatZodError(err: ZodError, input: unknown): string {
  const line = (path: (string | number)[], message: string) => {
    const value = getPath(input, path);
    const shown = value === undefined ? '' : ` = ${JSON.stringify(value)}`;
    return `${path.join('.') || '(root)'}${shown}: ${message}`;
  };
  return err.issues
    .map((issue) =>
      // Name each unknown key itself; the parent's value would dump the whole (root) config.
      issue.code === 'unrecognized_keys'
        ? issue.keys.map((k) => line([...issue.path, k], 'unknown key')).join('\n')
        : line(issue.path, issue.message),
    )
    .join('\n');
}

export interface LoadOptions {
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Command-line overrides as a partial config tree, applied last. */
  overrides?: Tree;
}

export function parseConfig(input: unknown): Config {
  const result = configSchema.safeParse(input);
  if (!result.success) throw new ConfigError(`invalid configuration:\n${formatZodError(result.error, input)}`);
  return result.data;
}

export function loadConfig(opts: LoadOptions = {}): Config {
  let fromFile: Tree = {};
  if (opts.file) {
    let text: string;
    try {
      text = readFileSync(opts.file, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${opts.file}: ${(err as Error).message}`);
    }
    let parsed: unknown;
    try {
      parsed = YAML.parse(text);
    } catch (err) {
      throw new ConfigError(`config file ${opts.file} is not valid YAML: ${(err as Error).message}`);
    }
    if (parsed !== null && parsed !== undefined && !isTree(parsed)) {
      throw new ConfigError(`config file ${opts.file} must hold a mapping at the top level`);
    }
    fromFile = (parsed as Tree | null) ?? {};
  }
  const merged = deepMerge(deepMerge(fromFile, envOverrides(opts.env ?? process.env)), opts.overrides ?? {});
  return parseConfig(merged);
}
