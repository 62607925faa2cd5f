/**
 * The private Postfix of `ceerion start` (when postfix is installed and we are root): inbound SMTP
 * and submission on loopback ports, configured from the same shipped files the Docker image and the
 * test harness apply (docker/postfix/milter.cf, policy.cf, lmtp.cf, accounts/postfix/pgsql-*.cf),
 * with only the addresses swapped for this stack's. Virtual mailboxes are the accounts table; they
 * are delivered through the LMTP indexer to the private Dovecot.
 */
import { mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../../core/config/schema.ts';
import { mainCfLines, writePostfixMaps } from '../../accounts/postfix-maps.ts';
import { LOG_FILE } from '../contracts.ts';
import { greetingCheck } from '../health.ts';
import { MainCf, masterCf, parseMainCf } from '../postfix/config.ts';
import type { ServiceSpec } from '../supervisor.ts';
import { findBinary, isRoot, osUser, run } from './system.ts';

const DOCKER_POSTFIX = path.resolve(import.meta.dirname, '../../docker/postfix');

export function postfixUsable(): boolean {
  return isRoot() && findBinary('/usr/sbin/postfix') !== undefined && osUser('postfix') !== undefined;
}

/** A shipped snippet's settings with its default address replaced by ours. */
async function shipped(file: string, from: string, to: string): Promise<Array<[string, string]>> {
  const text = await readFile(path.join(DOCKER_POSTFIX, file), 'utf8');
  return parseMainCf(text).map(([k, v]) => [k, v.replaceAll(from, to)]);
}

/** Postfix re-reads a main.cf modified within the last second until it "cools down" (~2 s); backdate ours. */
async function writeCold(file: string, text: string): Promise<void> {
  await writeFile(file, text);
  const past = new Date(Date.now() - 60_000);
  await utimes(file, past, past);
}

export interface StackAddresses {
  milter: string;
  policyd: string;
  lmtp: string;
  sasl: string;
}

export async function privatePostfix(varDir: string, config: Config, database: { url: string; schema: string }, addresses: StackAddresses): Promise<{ spec: ServiceSpec; smtpPort: number; submissionPort: number }> {
  const { smtpPort, submissionPort } = config.stack.postfix;
  const dir = path.join(varDir, 'postfix');
  const etc = path.join(dir, 'etc');
  await mkdir(etc, { recursive: true, mode: 0o755 });
  // post-install (run by `postfix start`) creates the queue's subdirectories with their owners.
  await mkdir(path.join(dir, 'spool'), { recursive: true, mode: 0o755 });
  const maps = path.join(etc, 'maps');
  await writePostfixMaps(maps, database);
  const domain = config.stack.domain;
  const cf = new MainCf()
    .set('compatibility_level', '3.6')
    .set('queue_directory', path.join(dir, 'spool'))
    .set('data_directory', path.join(dir, 'data'))
    .set('mail_owner', 'postfix')
    .set('setgid_group', 'postdrop')
    .set('myhostname', `mail.${domain}`)
    .set('mydomain', domain)
    .set('myorigin', '$mydomain')
    .set('inet_interfaces', '127.0.0.1')
    .set('inet_protocols', 'ipv4')
    .set('mynetworks', '127.0.0.0/8')
    // Every mailbox is virtual (the accounts table); nothing is delivered locally.
    .set('mydestination', '')
    .set('local_recipient_maps', '')
    .set('alias_maps', '')
    .set('alias_database', '')
    .set('smtpd_relay_restrictions', 'permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination')
    // Tests (and `mail:test`) pose as outside clients from loopback with XCLIENT.
    .set('smtpd_authorized_xclient_hosts', '127.0.0.0/8')
    .set('smtpd_peername_lookup', 'no')
    .set('smtpd_sasl_type', 'dovecot')
    .set('smtpd_sasl_path', addresses.sasl)
    .set('smtpd_sasl_security_options', 'noanonymous')
    .set('smtpd_tls_security_level', 'none')
    // No tlsmgr in this master.cf (loopback only): TLS for outbound would only log warnings.
    .set('smtp_tls_security_level', 'none')
    .set('maillog_file', LOG_FILE(varDir, 'postfix'))
    .set('maillog_file_prefixes', varDir)
    .set('syslog_name', 'ceerion-postfix')
    .set('biff', 'no');
  cf.setAll(await shipped('milter.cf', 'inet:127.0.0.1:8891', addresses.milter));
  cf.setAll(await shipped('policy.cf', 'inet:127.0.0.1:10040', addresses.policyd));
  cf.setAll(await shipped('lmtp.cf', 'inet:127.0.0.1:2424', addresses.lmtp));
  cf.setAll(parseMainCf(mainCfLines(maps)));
  await writeCold(path.join(etc, 'main.cf'), cf.render());
  const submission = [
    `127.0.0.1:${submissionPort} inet n - n - - smtpd`,
    '  -o syslog_name=ceerion-postfix/submission',
    '  -o smtpd_sasl_auth_enable=yes',
    '  -o smtpd_client_restrictions=permit_sasl_authenticated,reject',
    '  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject',
    '',
  ].join('\n');
  await writeCold(path.join(etc, 'master.cf'), masterCf(smtpPort) + submission);
  const postfix = findBinary('/usr/sbin/postfix')!;
  return {
    smtpPort,
    submissionPort,
    spec: {
      name: 'postfix',
      kind: 'daemon',
      // Last: it accepts mail only once the milter, policyd and the indexer answer.
      stage: 3,
      // start-fg keeps master in the foreground (as `master -s`) under the postfix-script shell.
      command: postfix,
      args: ['-c', etc, 'start-fg'],
      cwd: dir,
      logFile: LOG_FILE(varDir, 'postfix'),
      health: greetingCheck('SMTP', `inet:127.0.0.1:${smtpPort}`, '220'),
      stopCommand: () => run(postfix, ['-c', etc, 'stop']).then(() => undefined),
      // A master killed hard leaves a locked pid file that `postfix start` would trip over.
      beforeStart: () => run(postfix, ['-c', etc, 'stop']).then(() => undefined, () => undefined),
    },
  };
}
