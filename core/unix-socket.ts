/** Unix-socket housekeeping shared by every service that listens on `unix:/path`. */
import { existsSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/**
 * Create the socket's directory and remove a stale socket left by a crash. A socket someone still
 * answers on belongs to a running service, and a regular file is not ours: both are refused.
 */
export async function prepareSocketPath(p: string): Promise<void> {
  mkdirSync(path.dirname(p), { recursive: true });
  if (!existsSync(p)) return;
  if (!lstatSync(p).isSocket()) throw new Error(`${p} exists and is not a socket; refusing to remove it`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(p);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new Error(`${p} is in use by another running process`);
  unlinkSync(p);
}
