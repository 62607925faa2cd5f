/** The stack's state file (contracts.ts): written atomically, read by stop/status/smoke/logs. */
import { readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { STATE_FILE, type StackState } from './contracts.ts';

export async function writeState(state: StackState): Promise<void> {
  const file = STATE_FILE(state.varDir);
  await mkdir(path.dirname(file), { recursive: true });
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, `${JSON.stringify(state, null, 2)}\n`);
  await rename(temp, file);
}

export function readState(varDir: string): StackState | undefined {
  try {
    return JSON.parse(readFileSync(STATE_FILE(varDir), 'utf8')) as StackState;
  } catch {
    return undefined;
  }
}

/** The process exists and has not exited (a zombie, exited but not yet reaped by its parent, is dead). */
export function isAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // /proc/PID/stat: "PID (comm) STATE …"; comm may hold spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

/**
 * Serialises writes: state changes come in bursts (a whole stage turns healthy at once) and two
 * renames racing could leave an older state last.
 */
export class StateWriter {
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly snapshot: () => StackState) {}

  write(): Promise<void> {
    this.chain = this.chain.then(() => writeState(this.snapshot())).catch(() => undefined);
    return this.chain;
  }
}
