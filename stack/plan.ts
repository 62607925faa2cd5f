/**
 * What `ceerion start` runs, decided from the config and the machine: private PostgreSQL and Redis
 * unless URLs were given, a private clamd, Dovecot and Postfix when installed (and we are root),
 * and our four services as child processes wired to all of them through CEERION_* variables.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import type { Config } from '../core/config/schema.ts';
import { configSchema } from '../core/config/schema.ts';
import { parseListen } from '../core/listen.ts';
import { LOG_FILE, type StackEndpoints, type SuiteService } from './contracts.ts';
import { clamdInstalled, privateClamd } from './daemons/clamd.ts';
import { dovecotUsable, privateDovecot } from './daemons/dovecot.ts';
import { postfixUsable, privatePostfix } from './daemons/postfix.ts';
import { privatePostgres } from './daemons/postgres.ts';
import { privateRedis } from './daemons/redis.ts';
import { allOf, greetingCheck, httpCheck, tcpCheck, type HealthCheck } from './health.ts';
import type { ServiceSpec } from './supervisor.ts';

const BIN = path.resolve(import.meta.dirname, '../bin/ceerion.mjs');
const DEFAULTS = configSchema.parse({});

export interface StackPlan {
  varDir: string;
  specs: ServiceSpec[];
  endpoints: StackEndpoints;
  /** Lines for the start banner: what was left out and why. */
  notes: string[];
  database: { url: string; schema: string };
  keysDir: string;
  /** A one-off `ceerion ARGS…` run with the services' config and environment (the starter model). */
  cli(args: string[]): { command: string; args: string[]; env: NodeJS.ProcessEnv };
}

/** Postfix notation with a concrete host: `inet:127.0.0.1:8891` or `unix:/path`. */
export function postfixAddress(spec: string): string {
  const a = parseListen(spec);
  return a.kind === 'unix' ? `unix:${a.path}` : `inet:${a.host || '127.0.0.1'}:${a.port}`;
}

/** Whether the file (or the environment) names this key, i.e. the admin chose it. */
function chosen(configFile: string | undefined, env: NodeJS.ProcessEnv, section: 'database' | 'redis', conventional: string): boolean {
  if (env[conventional] || env[`CEERION_${section.toUpperCase()}_URL`]) return true;
  if (!configFile || !existsSync(configFile)) return false;
  const tree = YAML.parse(readFileSync(configFile, 'utf8')) as Record<string, Record<string, unknown> | undefined> | null;
  return tree?.[section]?.url !== undefined;
}

export async function planStack(config: Config, opts: { configFile?: string; env: NodeJS.ProcessEnv }): Promise<StackPlan> {
  const { stack } = config;
  const varDir = path.resolve(stack.varDir);
  // Dovecot's and Postfix's unprivileged processes must be able to traverse into it.
  await mkdir(varDir, { recursive: true, mode: 0o755 });
  const specs: ServiceSpec[] = [];
  const notes: string[] = [];
  const env: Record<string, string> = {};

  let databaseUrl = config.database.url;
  const privatePg = stack.postgres.mode === 'private' || (stack.postgres.mode === 'auto' && !chosen(opts.configFile, opts.env, 'database', 'DATABASE_URL'));
  if (privatePg) {
    const pg = await privatePostgres(varDir, stack.postgres.port);
    specs.push(pg.spec);
    databaseUrl = pg.url;
  }
  let redisUrl = config.redis.url;
  const privateRedisOn = stack.redis.mode === 'private' || (stack.redis.mode === 'auto' && !chosen(opts.configFile, opts.env, 'redis', 'REDIS_URL'));
  if (privateRedisOn) {
    const redis = await privateRedis(varDir, stack.redis.port);
    specs.push(redis.spec);
    redisUrl = redis.url;
  }
  env.CEERION_DATABASE_URL = databaseUrl;
  env.CEERION_REDIS_URL = redisUrl;
  const database = { url: databaseUrl, schema: config.database.schema };

  // Settings still at their defaults point at this stack's own files; an admin's choice wins.
  const dkim = config.milter.checks.dkimSign;
  const keysDir = dkim.keysDir === DEFAULTS.milter.checks.dkimSign.keysDir ? path.join(varDir, 'dkim') : dkim.keysDir;
  env.CEERION_MILTER_CHECKS_DKIM_SIGN_KEYS_DIR = keysDir;
  if (config.lmtp.spoolDir === DEFAULTS.lmtp.spoolDir) env.CEERION_LMTP_SPOOL_DIR = path.join(varDir, 'lmtp', 'spool');
  if (config.lmtp.index.backlogDir === DEFAULTS.lmtp.index.backlogDir) env.CEERION_LMTP_INDEX_BACKLOG_DIR = path.join(varDir, 'lmtp', 'backlog');
  let learnSpool = config.learn.spool.dir;
  if (learnSpool === DEFAULTS.learn.spool.dir) env.CEERION_LEARN_SPOOL_DIR = learnSpool = path.join(varDir, 'learn', 'spool');

  const av = config.milter.checks.antivirus;
  let clamd: string | undefined = av.enabled ? av.clamd : undefined;
  if (!av.enabled && stack.clamd.enabled !== 'off') {
    if (clamdInstalled()) {
      const c = await privateClamd(varDir);
      specs.push(c.spec);
      clamd = c.address;
      env.CEERION_MILTER_CHECKS_ANTIVIRUS_ENABLED = 'true';
      env.CEERION_MILTER_CHECKS_ANTIVIRUS_CLAMD = c.address;
      if (c.bootstrap) notes.push('clamd: no ClamAV databases in /var/lib/clamav (run freshclam); it knows only the EICAR test signature');
    } else if (stack.clamd.enabled === 'on') throw new Error('stack.clamd.enabled is on, but clamd is not installed (apt-get install clamav-daemon)');
    else notes.push('clamd: not installed (apt-get install clamav-daemon); antivirus check off');
  }

  const addresses = { milter: postfixAddress(config.milter.listen), policyd: postfixAddress(config.policyd.listen), lmtp: postfixAddress(config.lmtp.listen) };
  const endpoints: StackEndpoints = {
    ...addresses,
    ...(config.authPolicy.enabled ? { authPolicy: `http://${config.authPolicy.host}:${config.authPolicy.port}/` } : {}),
    api: `http://${config.lmtp.http.host}:${config.lmtp.http.port}`,
    metrics: {},
    databaseUrl,
    databaseSchema: config.database.schema,
    redisUrl,
    ...(clamd ? { clamd } : {}),
  };

  const wantDovecot = stack.dovecot.enabled !== 'off' && (stack.dovecot.enabled === 'on' || dovecotUsable());
  const wantPostfix = stack.postfix.enabled !== 'off' && wantDovecot && (stack.postfix.enabled === 'on' || postfixUsable());
  if (stack.dovecot.enabled === 'auto' && !wantDovecot) notes.push('dovecot: not started (needs root and dovecot-core, dovecot-imapd, dovecot-lmtpd, dovecot-pgsql, dovecot-sieve)');
  if (stack.postfix.enabled === 'auto' && !wantPostfix) notes.push('postfix: not started (needs root, postfix, postfix-pgsql and the private Dovecot)');
  if (wantDovecot) {
    const dovecot = await privateDovecot(varDir, { ...config, learn: { ...config.learn, spool: { ...config.learn.spool, dir: learnSpool } } }, database);
    specs.push(dovecot.spec);
    endpoints.imap = { host: '127.0.0.1', port: dovecot.imapPort };
    if (config.lmtp.dovecot.address === DEFAULTS.lmtp.dovecot.address) env.CEERION_LMTP_DOVECOT_ADDRESS = dovecot.lmtpAddress;
    env.CEERION_LMTP_RECIPIENT_LOOKUP_ENABLED = 'true';
    if (config.learn.gateway.socket === DEFAULTS.learn.gateway.socket) env.CEERION_LEARN_GATEWAY_SOCKET = dovecot.learnSocket;
    if (wantPostfix) {
      const postfix = await privatePostfix(varDir, config, database, { ...addresses, sasl: dovecot.saslAddress });
      specs.push(postfix.spec);
      endpoints.smtp = { host: '127.0.0.1', port: postfix.smtpPort };
      endpoints.submission = { host: '127.0.0.1', port: postfix.submissionPort };
    }
  }

  const configArgs = opts.configFile ? ['--config', path.resolve(opts.configFile)] : [];
  /** `command`: the CLI words, when they are not just the service's name. */
  const suite = (name: SuiteService, stage: number, health: HealthCheck[], command: string[] = [name]): void => {
    const port = stack.metricsPorts[name === 'mta-sts' ? 'mtaSts' : name];
    const metrics = `http://${config.metrics.host}:${port}/metrics`;
    if (config.metrics.enabled) endpoints.metrics[name] = metrics;
    specs.push({
      name,
      kind: 'suite',
      stage,
      command: process.execPath,
      args: ['--max-semi-space-size=2', BIN, ...command, ...configArgs],
      env: { ...opts.env, ...env, CEERION_METRICS_PORT: String(port) },
      logFile: LOG_FILE(varDir, name),
      health: allOf(...health, ...(config.metrics.enabled ? [httpCheck(metrics)] : [])),
    });
  };
  suite('milter', 2, [tcpCheck(addresses.milter)]);
  suite('policyd', 2, [tcpCheck(addresses.policyd)]);
  suite('lmtp', 2, [greetingCheck('LMTP', addresses.lmtp, '220'), ...(config.lmtp.http.enabled ? [httpCheck(`${endpoints.api}/healthz`)] : [])]);
  // After Dovecot (stage 1): the learner's socket lives in Dovecot's base_dir.
  if (config.learn.enabled) suite('learner', 2, []);
  if (Object.keys(config.mtaSts.policies).length > 0) {
    const at = `${config.mtaSts.host}:${config.mtaSts.port}`;
    endpoints.mtaSts = `http://${at}/.well-known/mta-sts.txt`;
    suite('mta-sts', 2, [tcpCheck(`inet:${at}`)], ['mta-sts', 'serve']);
  }
  const cli = (args: string[]) => ({ command: process.execPath, args: [BIN, ...args, ...configArgs], env: { ...opts.env, ...env } });
  return { varDir, specs, endpoints, notes, database, keysDir, cli };
}
