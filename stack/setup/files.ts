/**
 * Files as `ceerion setup` plans them (pure): the text each file should have, compared with the
 * text it has, and the report (`--dry-run` prints it as a unified diff per file).
 */
import { unifiedDiff } from './diff.ts';

export interface DesiredFile {
  path: string;
  text: string;
  mode: number;
  /** Group owner (by name); root's group otherwise. Files with secrets go to the daemon's group. */
  group?: string;
  /** An existing file keeps its own mode and owner (a file of the distribution we edit a line of). */
  keepMode?: boolean;
  /** Strings never printed (passwords, nonces): masked in the diff. */
  secrets?: string[];
}

export interface FileChange extends DesiredFile {
  /** The current text; undefined when the file does not exist. */
  before: string | undefined;
}

export interface DirSpec {
  path: string;
  mode: number;
  /** Owner and group by name; root otherwise. */
  owner?: string;
  group?: string;
}

/** The files whose text differs from `current` (a missing file differs from any text). */
export function fileChanges(desired: DesiredFile[], current: Map<string, string | undefined>): FileChange[] {
  return desired.filter((f) => current.get(f.path) !== f.text).map((f) => ({ ...f, before: current.get(f.path) }));
}

const MASK = '********';

/** The diff of one change with its secrets masked (longest first, so one that contains another is masked whole). */
export function changeDiff(change: FileChange): string {
  let text = unifiedDiff(change.before, change.text, { old: change.path, new: change.path });
  const secrets = [...new Set(change.secrets ?? [])].filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
  for (const s of secrets) text = text.replaceAll(s, MASK);
  return text;
}

export interface Report {
  dryRun: boolean;
  /** Packages not installed when setup started; `skipped` says why they stay so (--no-install, not root). */
  packages: { missing: string[]; skipped?: string };
  changes: FileChange[];
  /** The postconf edits (run on a staged copy; the result replaces main.cf / master.cf). */
  postconf: string[];
  commands: string[];
  notes: string[];
}

/** What setup prints: packages, every file's diff, the commands, notes, and a summary line. */
export function renderReport(r: Report): string {
  const out: string[] = [];
  const { missing, skipped } = r.packages;
  if (missing.length === 0) out.push('packages: all installed');
  else if (skipped) out.push(`packages: not installed (${skipped}): ${missing.join(' ')}`);
  else out.push(`packages: ${r.dryRun ? 'would install' : 'installed'} ${missing.join(' ')}`);
  for (const c of r.changes) out.push(changeDiff(c).trimEnd());
  if (r.postconf.length) out.push('postconf edits (made on a staged copy; its result is the diff above):', ...r.postconf.map((c) => `  ${c}`));
  if (r.commands.length) out.push(`${r.dryRun ? 'would run' : 'ran'}:`, ...r.commands.map((c) => `  ${c}`));
  for (const n of r.notes) out.push(`note: ${n}`);
  if (r.changes.length === 0 && r.commands.length === 0) out.push('nothing to change: everything is already set up');
  else if (r.dryRun) out.push(`dry run: ${r.changes.length} file(s) would change; nothing was written`);
  else out.push(`${r.changes.length} file(s) changed`);
  return `${out.join('\n')}\n`;
}
