// A stock Debian 12 Postfix + Dovecot configuration in a temp dir, for `ceerion setup` to work on
// without touching the machine's own /etc/postfix and /etc/dovecot.
// - Dovecot: the package's /etc/dovecot as it is (Debian's dovecot packages leave it untouched).
// - Postfix: this machine was installed with "No configuration", so main.cf is built the way the
//   package's postinst does for "Internet Site" with debconf's defaults: main.cf.debian (+
//   main.cf.tls when the snakeoil key exists), then the same `postconf -e` calls in the same
//   order; master.cf is master.cf.dist.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const STOCK_HOSTNAME = 'mail.example.net';

export interface StockConfigs {
  dir: string;
  postfixDir: string;
  dovecotDir: string;
}

/** postinst's settings for a new "Internet Site" install, debconf defaults, in postinst's order. */
export function postinstSettings(myhostname: string): string[] {
  const domain = myhostname.replace(/^[^.]*\./, '');
  return [
    `myhostname=${myhostname}`,
    'alias_maps=hash:/etc/aliases',
    'alias_database=hash:/etc/aliases',
    'myorigin=/etc/mailname',
    `mydestination=$myhostname, ${myhostname}, localhost.${domain}, , localhost`,
    'relayhost=',
    'mynetworks=127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128',
    'mailbox_size_limit=0',
    'recipient_delimiter=+',
    'inet_interfaces=all',
    'inet_protocols=all',
  ];
}

export async function buildStockPostfix(postfixDir: string, myhostname = STOCK_HOSTNAME): Promise<void> {
  await mkdir(postfixDir, { recursive: true, mode: 0o755 });
  const main = path.join(postfixDir, 'main.cf');
  let text = await readFile('/usr/share/postfix/main.cf.debian', 'utf8');
  if (existsSync('/etc/ssl/private/ssl-cert-snakeoil.key')) text += await readFile('/usr/share/postfix/main.cf.tls', 'utf8');
  await writeFile(main, text, { mode: 0o644 });
  await run('postconf', ['-c', postfixDir, '-e', 'smtpd_relay_restrictions=permit_mynetworks permit_sasl_authenticated defer_unauth_destination']);
  for (const setting of postinstSettings(myhostname)) await run('postconf', ['-c', postfixDir, '-e', setting]);
  await copyFile('/usr/share/postfix/master.cf.dist', path.join(postfixDir, 'master.cf'));
}

/**
 * Stock copies in a fresh temp dir (0755: Postfix and Dovecot processes must reach inside),
 * removed after the test through `defer` (after whatever ran in it has stopped).
 */
export async function stockConfigs(defer: (fn: () => Promise<unknown>) => void): Promise<StockConfigs> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ceerion-setup-test-'));
  await chmod(dir, 0o755);
  defer(() => rm(dir, { recursive: true, force: true, maxRetries: 5 }));
  const postfixDir = path.join(dir, 'etc-postfix');
  const dovecotDir = path.join(dir, 'etc-dovecot');
  await buildStockPostfix(postfixDir);
  await cp('/etc/dovecot', dovecotDir, { recursive: true, preserveTimestamps: true });
  return { dir, postfixDir, dovecotDir };
}
