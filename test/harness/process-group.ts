// /proc helpers the daemon harnesses share: is a process alive, and which processes are left in a
// daemon's process group (Postfix's and Dovecot's masters lead their own group, so every child
// they started shares the master's pid as pgid).
import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';

/** Alive = exists and is not a zombie (some container inits never reap orphans). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Live (non-zombie) members of the process group `pgid`. */
export async function groupMembers(pgid: number): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // fields: [0]=state [1]=ppid [2]=pgrp
      if (fields[0] !== 'Z' && Number(fields[2]) === pgid) pids.push(Number(entry));
    } catch {
      // exited while we were scanning
    }
  }
  return pids;
}
