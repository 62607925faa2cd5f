/** What `ceerion start` prints once the stack is ready: where everything is and what to try. */
import type { StackCredentials, StackState } from './contracts.ts';

export function banner(state: StackState, credentials: StackCredentials, notes: string[]): string {
  const e = state.endpoints;
  const lines = [
    '',
    `CEERION is running (ready in ${((state.readyMs ?? 0) / 1000).toFixed(1)} s; supervisor pid ${state.supervisorPid}).`,
    '',
    `  milter        ${e.milter}`,
    `  policy        ${e.policyd}${e.authPolicy ? ` (Dovecot auth policy ${e.authPolicy})` : ''}`,
    `  LMTP indexer  ${e.lmtp} (API ${e.api})`,
    `  PostgreSQL    ${e.databaseUrl} (schema ${e.databaseSchema})`,
    `  Redis         ${e.redisUrl}`,
    ...(e.clamd ? [`  clamd         ${e.clamd}`] : []),
    ...(e.mtaSts ? [`  MTA-STS       ${e.mtaSts} (proxy https://mta-sts.DOMAIN/ here)`] : []),
    ...(e.smtp ? [`  SMTP in       ${e.smtp.host}:${e.smtp.port}`] : []),
    ...(e.submission ? [`  submission    ${e.submission.host}:${e.submission.port} (AUTH required)`] : []),
    ...(e.imap ? [`  IMAP          ${e.imap.host}:${e.imap.port}`] : []),
    ...Object.entries(e.metrics).map(([name, url]) => `  metrics       ${url} (${name})`),
    '',
    `  test account  ${credentials.user} / ${credentials.password}   (also in ${state.varDir}/run/credentials.json)`,
    `  API token     ${credentials.apiToken}`,
    '',
    'Try:',
    ...(e.submission
      ? [`  swaks --server ${e.submission.host}:${e.submission.port} --auth-user ${credentials.user} --auth-password '${credentials.password}' --to ${credentials.user} --from ${credentials.user}`]
      : []),
    ...(e.imap ? [`  curl -s --url 'imap://${e.imap.host}:${e.imap.port}/INBOX' --user '${credentials.user}:${credentials.password}'`] : []),
    `  curl -s -H 'Authorization: Bearer ${credentials.apiToken}' '${e.api}/search?q=hello'`,
    '  pnpm mail:test      smoke-test this stack',
    '  pnpm mail:status    services, pids, health',
    '  pnpm mail:logs      follow every log',
    '  pnpm mail:stop      stop (or Ctrl-C here)',
    ...(notes.length ? ['', 'Notes:', ...notes.map((n) => `  - ${n}`)] : []),
    '',
  ];
  return lines.join('\n');
}
