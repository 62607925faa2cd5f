/**
 * A small unified diff (`diff -u` format) for `ceerion setup --dry-run`: the files it edits are
 * config files of a few hundred lines, so a plain LCS table is fast enough and keeps the code
 * obvious. Lines are compared exactly; a last line without a newline is marked as diff does.
 */

type Op = { kind: ' ' | '-' | '+'; line: string };

const NO_NEWLINE = '\\ No newline at end of file';

// A last line without a newline carries this mark, so "x" and "x\n" differ as lines do.
const NOEOL = '\u0000';

function splitLines(text: string): string[] {
  if (text === '') return [];
  if (text.endsWith('\n')) return text.slice(0, -1).split('\n');
  const lines = text.split('\n');
  lines[lines.length - 1] += NOEOL;
  return lines;
}

/** The edit script: a longest common subsequence, deletions before insertions at each gap. */
function editScript(a: string[], b: string[]): Op[] {
  const n = a.length;
  const m = b.length;
  // lcs[i][j] = LCS length of a[i..] and b[j..], one flat table.
  const width = m + 1;
  const lcs = new Uint32Array((n + 1) * width);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * width + j] = a[i] === b[j] ? lcs[(i + 1) * width + j + 1]! + 1 : Math.max(lcs[(i + 1) * width + j]!, lcs[i * width + j + 1]!);
    }
  }
  const ops: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      ops.push({ kind: ' ', line: a[i]! });
      i++;
      j++;
    } else if (j >= m || (i < n && lcs[(i + 1) * width + j]! >= lcs[i * width + j + 1]!)) {
      ops.push({ kind: '-', line: a[i++]! });
    } else {
      ops.push({ kind: '+', line: b[j++]! });
    }
  }
  return ops;
}

const range = (start: number, count: number): string => (count === 1 ? `${start}` : `${count === 0 ? start - 1 : start},${count}`);

/**
 * `--- oldName` / `+++ newName` and hunks with `context` lines around each change; '' when the
 * texts are equal. A missing file is passed as undefined and named /dev/null, as diff -N does.
 */
export function unifiedDiff(oldText: string | undefined, newText: string | undefined, names: { old: string; new: string }, context = 3): string {
  if (oldText === newText) return '';
  const ops = editScript(splitLines(oldText ?? ''), splitLines(newText ?? ''));
  // Where each op sits in the old and new file (1-based line numbers of the next line).
  const pos: Array<{ oldLine: number; newLine: number }> = [];
  let ol = 1;
  let nl = 1;
  for (const op of ops) {
    pos.push({ oldLine: ol, newLine: nl });
    if (op.kind !== '+') ol++;
    if (op.kind !== '-') nl++;
  }
  const changed = ops.map((op, k) => (op.kind !== ' ' ? k : -1)).filter((k) => k >= 0);
  const out = [`--- ${oldText === undefined ? '/dev/null' : names.old}`, `+++ ${newText === undefined ? '/dev/null' : names.new}`];
  let k = 0;
  while (k < changed.length) {
    const start = Math.max(0, changed[k]! - context);
    let end = Math.min(ops.length, changed[k]! + context + 1);
    while (k + 1 < changed.length && changed[k + 1]! - context <= end) {
      k++;
      end = Math.min(ops.length, changed[k]! + context + 1);
    }
    k++;
    const hunk = ops.slice(start, end);
    const oldCount = hunk.filter((op) => op.kind !== '+').length;
    const newCount = hunk.filter((op) => op.kind !== '-').length;
    out.push(`@@ -${range(pos[start]!.oldLine, oldCount)} +${range(pos[start]!.newLine, newCount)} @@`);
    for (const op of hunk) {
      if (op.line.endsWith(NOEOL)) out.push(`${op.kind}${op.line.slice(0, -1)}`, NO_NEWLINE);
      else out.push(`${op.kind}${op.line}`);
    }
  }
  return `${out.join('\n')}\n`;
}
