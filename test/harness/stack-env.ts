/**
 * Environment for a `ceerion start` that must not collide with anything else on the machine:
 * every port the stack listens on set to a free one (other tests, or a developer's stack, may
 * hold the defaults), and nothing inherited that would point it elsewhere (CEERION_*,
 * DATABASE_URL, REDIS_URL, PG*).
 */
import { freePort } from './postfix.ts';

const PORT_VARIABLES = [
  'CEERION_STACK_POSTGRES_PORT',
  'CEERION_STACK_REDIS_PORT',
  'CEERION_STACK_POSTFIX_SMTP_PORT',
  'CEERION_STACK_POSTFIX_SUBMISSION_PORT',
  'CEERION_STACK_DOVECOT_IMAP_PORT',
  'CEERION_STACK_DOVECOT_AUTH_PORT',
  'CEERION_STACK_DOVECOT_LMTP_PORT',
  'CEERION_AUTH_POLICY_PORT',
  'CEERION_LMTP_HTTP_PORT',
  'CEERION_STACK_METRICS_PORTS_MILTER',
  'CEERION_STACK_METRICS_PORTS_POLICYD',
  'CEERION_STACK_METRICS_PORTS_LMTP',
  'CEERION_STACK_METRICS_PORTS_LEARNER',
  'CEERION_STACK_METRICS_PORTS_SUPERVISOR',
  'CEERION_STACK_METRICS_PORTS_MTA_STS',
  'CEERION_MTA_STS_PORT',
];

export async function isolatedStackEnv(extra: NodeJS.ProcessEnv = {}): Promise<NodeJS.ProcessEnv> {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(CEERION_|DATABASE_URL$|REDIS_URL$|NODE_TEST|PG)/.test(k)));
  for (const name of PORT_VARIABLES) env[name] = String(await freePort());
  env.CEERION_MILTER_LISTEN = `inet:127.0.0.1:${await freePort()}`;
  env.CEERION_POLICYD_LISTEN = `inet:127.0.0.1:${await freePort()}`;
  env.CEERION_LMTP_LISTEN = `inet:127.0.0.1:${await freePort()}`;
  return { ...env, ...extra };
}
