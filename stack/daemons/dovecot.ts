/**
 * The private Dovecot of `ceerion start` (when dovecot-core is installed and we are root): the
 * shipped snippets the test harness uses (stack/dovecot/config.ts renders them): SQL accounts in
 * the suite's database, LMTP (a unix socket the indexer relays to), quota, push notifications to
 * the indexer, Junk filing and learning through the learner's socket, the auth policy of policyd,
 * plus a SASL listener on loopback for Postfix's submission service. Mail lives in VAR/dovecot/mail.
 */
import { chmod, chown, mkdir, symlink, writeFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Config } from '../../core/config/schema.ts';
import { LOG_FILE } from '../contracts.ts';
import { buildConfig, LEARN_SOCKET_DIR, writeLmtpSnippet, writeSnippets, type DovecotOptions } from '../dovecot/config.ts';
import { greetingCheck } from '../health.ts';
import type { ServiceSpec } from '../supervisor.ts';
import { findBinary, isRoot, osUser } from './system.ts';

export interface PrivateDovecot {
  spec: ServiceSpec;
  imapPort: number;
  /** Where the LMTP indexer relays (lmtp.dovecot.address). */
  lmtpAddress: string;
  /** Where the learner's gateway must listen (learn.gateway.socket). */
  learnSocket: string;
  /** Postfix's smtpd_sasl_path. */
  saslAddress: string;
}

export function dovecotUsable(): boolean {
  return isRoot() && findBinary('/usr/sbin/dovecot') !== undefined && osUser('dovecot') !== undefined;
}

export async function privateDovecot(varDir: string, config: Config, database: { url: string; schema: string }): Promise<PrivateDovecot> {
  const { dovecot } = config.stack;
  const dir = path.join(varDir, 'dovecot');
  // The unprivileged auth, login and mail processes must reach inside.
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o755);
  const mailUser = osUser('nobody');
  if (!mailUser) throw new Error('no `nobody` OS user to own the mail');
  for (const sub of ['mail', 'state']) await mkdir(path.join(dir, sub), { recursive: true, mode: 0o755 });
  await chown(path.join(dir, 'mail'), mailUser.uid, mailUser.gid);
  // The fallback learn program (when the learner's socket is down) writes here as the mail user.
  const spool = path.resolve(config.learn.spool.dir);
  await mkdir(spool, { recursive: true, mode: 0o755 });
  await chown(spool, mailUser.uid, mailUser.gid);
  const opts: DovecotOptions = {
    sqlAccounts: database,
    lmtp: true,
    quota: {},
    push: { url: `http://127.0.0.1:${config.lmtp.http.port}/push`, token: config.lmtp.http.pushToken },
    sieveDelivery: true,
    learn: { spoolDir: spool, flags: config.learn.flags },
    ...(config.authPolicy.enabled ? { authPolicy: { host: config.authPolicy.host, port: config.authPolicy.port, apiHeader: config.authPolicy.apiHeader } } : {}),
  };
  const includes = await writeSnippets(dir, opts, randomBytes(16).toString('hex'), mailUser);
  await writeLmtpSnippet(dir, dovecot.lmtpPort);
  // Postfix's submission service asks Dovecot to authenticate its clients (smtpd_sasl_type = dovecot).
  const sasl = ['service auth {', '  inet_listener sasl {', '    address = 127.0.0.1', `    port = ${dovecot.authPort}`, '  }', '}'].join('\n');
  const configFile = path.join(dir, 'dovecot.conf');
  await writeFile(configFile, buildConfig(dir, dovecot.imapPort, { ...opts, extraConfig: sasl }, mailUser, includes), { mode: 0o644 });
  // buildConfig logs to DIR/dovecot.log; mail:logs reads VAR/log/*.log.
  const logLink = LOG_FILE(varDir, 'dovecot');
  await mkdir(path.dirname(logLink), { recursive: true });
  if (!existsSync(logLink)) await symlink(path.join(dir, 'dovecot.log'), logLink).catch(() => undefined);
  const bin = findBinary('/usr/sbin/dovecot')!;
  return {
    imapPort: dovecot.imapPort,
    lmtpAddress: `unix:${path.join(dir, 'run', 'lmtp')}`,
    learnSocket: path.join(dir, 'run', LEARN_SOCKET_DIR, 'ceerion-learn'),
    saslAddress: `inet:127.0.0.1:${dovecot.authPort}`,
    spec: {
      name: 'dovecot',
      kind: 'daemon',
      // With clamd, right after provisioning: it needs only the accounts, and starting it before
      // our services (not after) takes ~3 s off a cold start.
      stage: 1,
      command: bin,
      args: ['-F', '-c', configFile],
      cwd: dir,
      logFile: logLink,
      health: greetingCheck('IMAP', `inet:127.0.0.1:${dovecot.imapPort}`, '* OK'),
      // A master killed hard leaves its pid file; Dovecot then refuses to start.
      beforeStart: () => rm(path.join(dir, 'run', 'master.pid'), { force: true }),
    },
  };
}
