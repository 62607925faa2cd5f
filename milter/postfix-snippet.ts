/**
 * The main.cf lines an admin adds. The single source is docker/postfix/milter.cf, which the
 * Docker image and the test harness's private Postfix use too; here we only substitute the
 * address the milter really listens on.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseListen } from '../core/listen.ts';

export const SNIPPET_FILE = fileURLToPath(new URL('../docker/postfix/milter.cf', import.meta.url));

/** Postfix resolves unix: milter paths inside its chroot (the queue directory) when smtpd is chrooted. */
const POSTFIX_QUEUE = '/var/spool/postfix';

export function postfixMilterAddress(listen: string): string {
  const addr = parseListen(listen);
  if (addr.kind === 'unix' && addr.path.startsWith(`${POSTFIX_QUEUE}/`)) return `unix:${addr.path.slice(POSTFIX_QUEUE.length)}`;
  if (addr.kind === 'tcp' && (addr.host === '0.0.0.0' || addr.host === '::')) return `inet:127.0.0.1:${addr.port}`;
  return listen.startsWith('local:') ? `unix:${listen.slice(6)}` : listen;
}

export function postfixSnippet(listen: string): string {
  const text = readFileSync(SNIPPET_FILE, 'utf8');
  let out = text.replace(/^smtpd_milters = .*$/m, `smtpd_milters = ${postfixMilterAddress(listen)}`);
  const addr = parseListen(listen);
  if (addr.kind === 'unix' && !addr.path.startsWith(`${POSTFIX_QUEUE}/`)) {
    out +=
      `# Note: ${addr.path} is outside ${POSTFIX_QUEUE}. If smtpd runs chrooted (master.cf, column 5 = y),\n` +
      `# put the socket under ${POSTFIX_QUEUE} (e.g. unix:${POSTFIX_QUEUE}/ceerion/milter.sock).\n`;
  }
  return out;
}
