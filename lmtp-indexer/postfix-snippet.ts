/**
 * The main.cf lines that route virtual mailbox delivery through the indexer. The single source is
 * docker/postfix/lmtp.cf (the Docker image and the test harness's private Postfix use it too);
 * here only the address the indexer really listens on is substituted.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseListen } from '../core/listen.ts';

export const LMTP_SNIPPET_FILE = fileURLToPath(new URL('../docker/postfix/lmtp.cf', import.meta.url));

/** Postfix's lmtp client takes `inet:host:port` or `unix:/path`; a wildcard bind is reached on loopback. */
export function postfixLmtpAddress(listen: string): string {
  const addr = parseListen(listen);
  if (addr.kind === 'unix') return `unix:${addr.path}`;
  const host = addr.host === '0.0.0.0' || addr.host === '::' ? '127.0.0.1' : addr.host;
  return host.includes(':') ? `inet:[${host}]:${addr.port}` : `inet:${host}:${addr.port}`;
}

export function lmtpSnippet(listen: string): string {
  return readFileSync(LMTP_SNIPPET_FILE, 'utf8').replace(/^virtual_transport = .*$/m, `virtual_transport = lmtp:${postfixLmtpAddress(listen)}`);
}
