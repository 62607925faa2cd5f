/**
 * `ceerion setup`'s plan (pure): the suite's config, the shipped templates and what the host has
 * now in; the packages to install, the postconf edits, the files to write and the directories to
 * create out. gather.ts collects the inputs, stage.ts turns the postconf edits into main.cf and
 * master.cf texts with the real postconf, apply.ts carries the plan out.
 */
import path from 'node:path';
import { fillPlaceholders, mainCfLines, POSTFIX_MAPS, postfixMapValues } from '../../accounts/postfix-maps.ts';
import type { Config } from '../../core/config/schema.ts';
import { parseListen } from '../../core/listen.ts';
import { dovecotFiles, type DovecotTemplates } from './dovecot.ts';
import type { DesiredFile, DirSpec } from './files.ts';
import { hasServerTls, mainCfEdits, masterCfEdits, wantedMainCf, type MainCfEdit, type MasterCfEdit } from './postfix.ts';

/** Debian packages the suite uses on the mail host. */
export const BASE_PACKAGES = [
  'postfix',
  'postfix-pgsql',
  'dovecot-core',
  'dovecot-imapd',
  'dovecot-lmtpd',
  'dovecot-pgsql',
  'dovecot-sieve',
  'dovecot-managesieved',
  'clamav-daemon',
  'clamav-freshclam',
  'zstd',
] as const;

export interface SetupOptions {
  postfixDir: string;
  dovecotDir: string;
  /** Owner of the mailboxes; created (system user, own group) when missing. */
  mailUser: string;
  /** Each account's home with Dovecot variables; the fixed part before the first variable is created. */
  mailHome: string;
  /** Dovecot quota rule for accounts without their own. */
  defaultQuotaRule: string;
  /** The user the suite's services run as (may use Dovecot's LMTP socket). */
  serviceUser: string;
}

export interface SetupFacts {
  /** Postfix's queue_directory (postconf -h). */
  postfixQueueDir: string;
  /** Dovecot's base_dir (doveconf -h). */
  dovecotBaseDir: string;
  /** main.cf's text, or Debian's main.cf.debian when there is none yet. */
  mainCf: string;
  mainCfExists: boolean;
  masterCf: string;
  installedPackages: Set<string>;
  /** The mail user's primary group when the user exists. */
  mailGroup: string | undefined;
  newHashNonce: string;
  /** Relative paths in the config (learn.spool.dir) are taken from here. */
  cwd: string;
}

export interface SetupTemplates {
  /** docker/postfix/*.cf with the configured addresses (the products' snippet functions). */
  postfixSnippets: { milter: string; policy: string; lmtp: string };
  /** accounts/postfix/*.cf by file name, unfilled. */
  postfixMaps: Record<string, string>;
  dovecot: DovecotTemplates;
}

export interface SetupPlan {
  packages: string[];
  main: MainCfEdit[];
  master: MasterCfEdit[];
  files: DesiredFile[];
  dirs: DirSpec[];
  /** The mail user to create, when it does not exist. */
  createMailUser?: string;
  notes: string[];
}

const loopbackHost = (host: string): boolean => /^(127\.|localhost$|::1$|\[::1\]$)/.test(host);
/** A wildcard listener is reached on loopback. */
const reachable = (host: string): string => (host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host);

/** The packages to install: the base set, plus the local database servers the config points at. */
export function wantedPackages(config: Config): string[] {
  const out: string[] = [...BASE_PACKAGES];
  if (loopbackHost(new URL(config.database.url).hostname)) out.push('postgresql');
  if (loopbackHost(new URL(config.redis.url).hostname)) out.push('redis-server');
  return out;
}

/** The directory part of a home template before its first variable: /var/vmail/%Ld/%Ln → /var/vmail. */
export function mailRoot(mailHome: string): string {
  const parts = mailHome.split('/');
  const fixed = parts.slice(0, parts.findIndex((p) => p.includes('%')));
  const root = fixed.join('/');
  if (!path.isAbsolute(mailHome) || root === '' || root === '/') throw new Error(`--mail-home ${mailHome}: expected an absolute path with a fixed directory before the Dovecot variables, e.g. /var/vmail/%Ld/%Ln`);
  return root;
}

export function planSetup(config: Config, opts: SetupOptions, templates: SetupTemplates, facts: SetupFacts, current: Map<string, string | undefined>): SetupPlan {
  const notes: string[] = [];
  const packages = wantedPackages(config).filter((p) => !facts.installedPackages.has(p));

  // Postfix: the shipped snippets, the accounts' maps, SASL.
  const mapsDir = path.join(opts.postfixDir, 'ceerion');
  const wanted = wantedMainCf([templates.postfixSnippets.milter, templates.postfixSnippets.policy, templates.postfixSnippets.lmtp, mainCfLines(mapsDir)]);
  const main = mainCfEdits(facts.mainCf, wanted);
  const master = masterCfEdits(facts.masterCf, hasServerTls(facts.mainCf));
  notes.push(...main.notes, ...master.notes);
  const mapValues = postfixMapValues(config.database);
  const files: DesiredFile[] = POSTFIX_MAPS.map((m) => ({
    path: path.join(mapsDir, m.file),
    text: fillPlaceholders(m.file, templates.postfixMaps[m.file] ?? '', { ...mapValues }),
    mode: 0o640,
    group: 'postfix',
    secrets: [mapValues.PG_PASSWORD],
  }));

  // Dovecot.
  const mailGroup = facts.mailGroup ?? opts.mailUser;
  const lmtpAddr = parseListen(config.lmtp.dovecot.address);
  const http = config.lmtp.http;
  const spoolDir = path.resolve(facts.cwd, config.learn.spool.dir);
  if (!path.isAbsolute(config.learn.spool.dir)) notes.push(`learn.spool.dir is relative (${config.learn.spool.dir}); Dovecot's fallback program writes to ${spoolDir}, so run the learner from ${facts.cwd} or set an absolute learn.spool.dir`);
  const dovecot = dovecotFiles(
    templates.dovecot,
    {
      dovecotDir: opts.dovecotDir,
      baseDir: facts.dovecotBaseDir,
      database: config.database,
      mailUser: opts.mailUser,
      mailGroup,
      mailHome: opts.mailHome,
      defaultQuotaRule: opts.defaultQuotaRule,
      postfixQueueDir: facts.postfixQueueDir,
      lmtpAddress: lmtpAddr.kind === 'unix' ? lmtpAddr : { kind: 'tcp', host: reachable(lmtpAddr.host), port: lmtpAddr.port },
      serviceUser: opts.serviceUser,
      ...(http.enabled ? { push: { url: `http://${reachable(http.host)}:${http.port}/push`, token: http.pushToken } } : {}),
      ...(config.authPolicy.enabled ? { authPolicy: { host: reachable(config.authPolicy.host), port: config.authPolicy.port, apiHeader: config.authPolicy.apiHeader } } : {}),
      newHashNonce: facts.newHashNonce,
      learn: { spoolDir, maxBytes: config.learn.maxMessageBytes, gatewaySocket: config.learn.gateway.socket, flags: config.learn.flags },
    },
    current,
  );
  files.push(...dovecot.files);
  notes.push(...dovecot.notes);

  const own = path.join(opts.dovecotDir, 'ceerion');
  const dirs: DirSpec[] = [
    { path: mapsDir, mode: 0o750, group: 'postfix' },
    { path: own, mode: 0o755 },
    { path: path.join(own, 'sieve'), mode: 0o755 },
    { path: path.join(own, 'sieve-bin'), mode: 0o755 },
    { path: mailRoot(opts.mailHome), mode: 0o770, owner: opts.mailUser, group: mailGroup },
    // The fallback program (run as the mail user) writes here; the learner reads it.
    { path: spoolDir, mode: 0o770, owner: opts.mailUser, group: mailGroup },
    { path: path.join(spoolDir, 'tmp'), mode: 0o770, owner: opts.mailUser, group: mailGroup },
    { path: path.join(spoolDir, 'new'), mode: 0o770, owner: opts.mailUser, group: mailGroup },
  ];
  return {
    packages,
    main: main.edits,
    master: master.edits,
    files,
    dirs,
    ...(facts.mailGroup === undefined ? { createMailUser: opts.mailUser } : {}),
    notes,
  };
}
