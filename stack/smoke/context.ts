/**
 * What every smoke check gets: the running stack as `ceerion start` published it (stack.json,
 * credentials.json), a run id that makes this run's messages recognisable, and a few shared
 * helpers. Reading the files is the only I/O here.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CREDENTIALS_FILE, STATE_FILE, type HostPort, type StackCredentials, type StackState } from '../contracts.ts';

export interface SmokeContext {
  state: StackState;
  creds: StackCredentials;
  /** Lower-case letters and digits, fresh per run: subjects and bodies carry it. */
  runId: string;
  /** One SMTP reply, IMAP wait or HTTP call may take this long (default 30 s). */
  stepTimeoutMs: number;
  /** Client addresses already handed out this run (each check poses as its own client). */
  usedAddresses: Set<string>;
}

export class SmokeSetupError extends Error {}

export async function loadStack(varDir: string): Promise<{ state: StackState; creds: StackCredentials }> {
  const read = async <T>(file: string, what: string): Promise<T> => {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new SmokeSetupError(code === 'ENOENT' ? `${file} not found: is the stack running (pnpm mail:start)?` : `${file}: ${(err as Error).message}`);
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new SmokeSetupError(`${file}: not valid JSON (${what})`);
    }
  };
  const state = await read<StackState>(STATE_FILE(varDir), 'stack state');
  const creds = await read<StackCredentials>(CREDENTIALS_FILE(varDir), 'credentials');
  if (state.version !== 1) throw new SmokeSetupError(`${STATE_FILE(varDir)}: state version ${String(state.version)}, expected 1`);
  return { state, creds };
}

/** Why the stack cannot be tested at all (not running, not ready); undefined when it can. */
export function notTestable(state: StackState, alive: (pid: number) => boolean): string | undefined {
  if (state.stopping || !alive(state.supervisorPid)) return `the stack is not running (supervisor ${state.supervisorPid} is gone); start it with pnpm mail:start`;
  if (!state.ready) {
    const waiting = state.services.filter((s) => s.state !== 'healthy').map((s) => `${s.name} ${s.state}`);
    return `the stack is not ready yet (${waiting.join(', ') || 'starting'})`;
  }
  return undefined;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function newRunId(): string {
  return randomBytes(6).toString('hex').replace(/\d/g, (d) => 'ghijklmnop'[Number(d)]!);
}

/** RFC 5737 documentation networks: never a real client, so posing as one harms nobody. */
const TEST_NETS = ['192.0.2', '198.51.100', '203.0.113'];

/** A TEST-NET address not yet used this run (and, through `taken`, not known to the rate limiter). */
export function randomTestNetAddress(used: Set<string>, random: (n: number) => number = randomInt): string {
  for (;;) {
    const addr = `${TEST_NETS[random(TEST_NETS.length)]}.${1 + random(254)}`;
    if (!used.has(addr)) {
      used.add(addr);
      return addr;
    }
  }
}

/** A marker word unique to one message of this run: searchable (letters and digits only). */
export const marker = (ctx: SmokeContext, what: string): string => `smoke${ctx.runId}${what}`;

export function need(ep: HostPort | undefined, what: string): HostPort {
  if (!ep) throw new Error(`the stack has no ${what} endpoint (is Postfix/Dovecot installed? see stack.json)`);
  return ep;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns something other than undefined, or throws after `timeoutMs`. */
export async function eventually<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, stepMs = 250): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= until) throw new Error(`${what}: not seen within ${Math.round(timeoutMs / 1000)} s${last ? ` (${(last as Error).message})` : ''}`);
    await sleep(stepMs);
  }
}
