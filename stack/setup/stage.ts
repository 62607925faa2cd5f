/**
 * Turns the planned postconf edits into the new main.cf and master.cf texts by running the real
 * `postconf -c DIR -e / -M / -P` on copies in a scratch directory. So the dry run shows, and the
 * apply writes, exactly the bytes Postfix's own tool produces, and the live files are replaced in
 * one rename instead of being edited in place by several postconf runs.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { postconfArgs, type MainCfEdit, type MasterCfEdit } from './postfix.ts';

const run = promisify(execFile);

export interface StagedPostfix {
  mainCf: string;
  masterCf: string;
  /** The commands, as they would be run against the live directory. */
  commands: string[];
}

const shellWord = (w: string): string => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);

export async function stagePostfix(postfixDir: string, mainCf: string, masterCf: string, main: MainCfEdit[], master: MasterCfEdit[]): Promise<StagedPostfix> {
  const live = postconfArgs(postfixDir, main, master);
  const commands = live.map((a) => ['postconf', ...a].map(shellWord).join(' '));
  if (live.length === 0) return { mainCf, masterCf, commands };
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'ceerion-setup-'));
  try {
    await writeFile(path.join(scratch, 'main.cf'), mainCf);
    await writeFile(path.join(scratch, 'master.cf'), masterCf);
    for (const args of postconfArgs(scratch, main, master)) {
      try {
        await run('postconf', args, { timeout: 30_000 });
      } catch (err) {
        const e = err as { stderr?: string; message: string };
        throw new Error(`postconf ${args.join(' ')} failed: ${e.stderr || e.message}`);
      }
    }
    return {
      mainCf: await readFile(path.join(scratch, 'main.cf'), 'utf8'),
      masterCf: await readFile(path.join(scratch, 'master.cf'), 'utf8'),
      commands,
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
