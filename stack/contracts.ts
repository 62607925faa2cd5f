/**
 * What `ceerion start` (pnpm mail:start) publishes about a running stack, so that other commands
 * in other terminals (`mail:stop`, `mail:status`, `mail:test`, `mail:logs`) can find it.
 *
 * The supervisor writes STATE_FILE (JSON, StackState) when it starts, on every service state
 * change, and removes `supervisorPid` liveness on exit (state: 'stopped'). CREDENTIALS_FILE (mode
 * 0600) holds the test account's password and API token; it is kept across restarts so the test
 * account stays usable.
 *
 * Layout under the var dir (default ./var, `stack.varDir`):
 *   run/stack.json            StackState
 *   run/credentials.json      StackCredentials (0600)
 *   log/<service>.log         one file per service: pino JSON lines for ours, text for daemons
 *   postgres/ redis/ postfix/ dovecot/ clamav/ dkim/ learn/   the private daemons' data
 */
import path from 'node:path';

export const STATE_FILE = (varDir: string): string => path.join(varDir, 'run', 'stack.json');
export const CREDENTIALS_FILE = (varDir: string): string => path.join(varDir, 'run', 'credentials.json');
export const LOG_DIR = (varDir: string): string => path.join(varDir, 'log');
export const LOG_FILE = (varDir: string, service: string): string => path.join(varDir, 'log', `${service}.log`);

/** Our own services (node processes) and the daemons the stack may start privately. */
export type SuiteService = 'milter' | 'policyd' | 'lmtp' | 'learner' | 'mta-sts';
export type DaemonService = 'postgres' | 'redis' | 'clamd' | 'dovecot' | 'postfix';
export type ServiceName = SuiteService | DaemonService;

export type ServiceState = 'starting' | 'healthy' | 'unhealthy' | 'restarting' | 'stopping' | 'stopped' | 'failed';

export interface ServiceStatus {
  name: ServiceName;
  kind: 'suite' | 'daemon';
  state: ServiceState;
  pid?: number;
  /** Restarts after crashes since the stack started. */
  restarts: number;
  lastExit?: { code: number | null; signal: string | null; at: string };
  /** What the health check tests, e.g. `tcp 127.0.0.1:8891` or `GET http://127.0.0.1:10043/healthz`. */
  health: string;
  logFile: string;
}

export interface HostPort {
  host: string;
  port: number;
}

export interface StackEndpoints {
  /** Postfix, inbound (MX role): no auth; XCLIENT allowed from loopback so tests can pose as any client. */
  smtp?: HostPort;
  /** Postfix submission: AUTH PLAIN/LOGIN (Dovecot SASL) required, no TLS (loopback only). */
  submission?: HostPort;
  /** Dovecot IMAP, plaintext LOGIN allowed (loopback only). */
  imap?: HostPort;
  /** Postfix notation addresses of our services. */
  milter: string;
  policyd: string;
  lmtp: string;
  /** http://127.0.0.1:10041/ (Dovecot auth policy), when enabled. */
  authPolicy?: string;
  /** The LMTP indexer's HTTP API: GET /search, GET /events (WebSocket), GET /healthz. */
  api: string;
  /** The MTA-STS policy server (plain HTTP, behind a TLS proxy), when mtaSts.policies names domains. */
  mtaSts?: string;
  /** Prometheus /metrics URL per service. */
  metrics: Partial<Record<SuiteService | 'supervisor', string>>;
  databaseUrl: string;
  /** The PostgreSQL schema the suite uses (database.schema). */
  databaseSchema: string;
  redisUrl: string;
  /** clamd (Postfix notation), when the antivirus check is on. */
  clamd?: string;
}

export interface StackState {
  version: 1;
  supervisorPid: number;
  startedAt: string;
  /** True once every service passed its health check for the first time. */
  ready: boolean;
  /** Milliseconds from start to ready. */
  readyMs?: number;
  stopping: boolean;
  /** Absolute var dir. */
  varDir: string;
  configFile?: string;
  /** The mail domain of the private Postfix + Dovecot pair (default ceerion.test). */
  domain: string;
  endpoints: StackEndpoints;
  services: ServiceStatus[];
  /**
   * The classifier's model: `training` while the starter model is trained from the SpamAssassin
   * corpus after the first start (the milter keeps all mail in the inbox until then), `present`
   * or `trained` once one is active, `unavailable` when there is none and no corpus to train on.
   */
  classifierModel?: 'training' | 'present' | 'trained' | 'unavailable' | 'failed';
}

export interface StackCredentials {
  /** test@<domain>: an account in the accounts table, with a mailbox in the private Dovecot. */
  user: string;
  password: string;
  /** Bearer token for the LMTP indexer's API (search, events) for `user`. */
  apiToken: string;
  /** DKIM selector the milter signs the domain's mail with (keys under varDir/dkim). */
  dkimSelector: string;
}
