/**
 * Every command the docs tell an operator to type exists:
 * - each `ceerion SUB [SUB]` in a shell block of docs/ (and mta-sts/README.md) is a command of
 *   the CLI;
 * - each `--option` after it is in that command's `--help`;
 * - each `pnpm SCRIPT` is in package.json.
 * The stack commands other engineers are building (issue 9) may not be registered yet. They are
 * listed below and reported, not failed.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fencedBlocks, ROOT } from './runbook.ts';

/** `ceerion start|stop|status|logs|smoke|setup` and their pnpm scripts, built in parallel (issue 9). */
const STACK_COMMANDS = new Set(['start', 'stop', 'status', 'logs', 'smoke', 'setup']);
const STACK_SCRIPTS = new Set(['mail:start', 'mail:stop', 'mail:status', 'mail:logs', 'mail:test', 'mail:setup']);
const PNPM_BUILTINS = new Set(['install', 'exec', 'i']);

const DOCS = [
  ...readdirSync(path.join(ROOT, 'docs/runbooks')).filter((f) => f.endsWith('.md')).map((f) => path.join(ROOT, 'docs/runbooks', f)),
  path.join(ROOT, 'docs/architecture.md'),
  path.join(ROOT, 'mta-sts/README.md'),
];

interface Use {
  where: string;
  words: string[];
  options: string[];
}

/** Shell lines of every sh block, continuation lines joined. */
function shellLines(): Array<{ where: string; text: string }> {
  return DOCS.flatMap((file) =>
    fencedBlocks(file)
      .filter((b) => /^(sh|bash)\b/.test(b.info))
      .flatMap((b) => b.code.replace(/\\\n/g, ' ').split('\n').map((text, i) => ({ where: `${path.relative(ROOT, file)}:${b.line + 1 + i}`, text }))),
  );
}

function ceerionUses(): Use[] {
  const uses: Use[] = [];
  for (const { where, text } of shellLines()) {
    // One simple command at a time: stop at pipes, lists, redirections and comments.
    for (const m of text.replace(/#.*$/, '').matchAll(/(?:^|[\s;&|(`$])ceerion\s+([^|;&<>)`]*)/g)) {
      const tokens = m[1]!.trim().split(/\s+/).filter(Boolean);
      const words: string[] = [];
      for (const tok of tokens) {
        if (!/^[a-z][a-z0-9-]*$/.test(tok)) break;
        words.push(tok);
      }
      uses.push({ where, words, options: tokens.filter((x) => /^--[a-z]/.test(x)).map((x) => x.replace(/=.*$/, '')) });
    }
  }
  return uses;
}

interface Node {
  name: string;
  options: string[];
  commands: Node[];
}

/** The CLI's whole command tree, from one process (cli-tree.mjs replaces parsing with a dump). */
function cliTree(): Promise<Node> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CEERION_') && !k.startsWith('NODE_TEST')));
  return new Promise((resolve, reject) =>
    execFile(process.execPath, ['--import', path.join(ROOT, 'test/docs/cli-tree.mjs'), path.join(ROOT, 'bin/ceerion.mjs')], { cwd: ROOT, env, encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout) as Node),
    ),
  );
}

test('every `ceerion …` command and option in the docs exists in the CLI', async (t) => {
  const uses = ceerionUses();
  assert.ok(uses.length > 40, `found only ${uses.length} ceerion commands in the docs`);
  const root = await cliTree();
  const problems: string[] = [];
  const pending = new Set<string>();
  for (const u of uses) {
    // The command path goes as deep as the CLI has subcommands; the rest are arguments.
    const path: Node[] = [];
    let node = root;
    for (const w of u.words) {
      const next = node.commands.find((c) => c.name === w);
      if (!next) break;
      path.push(next);
      node = next;
    }
    if (path.length === 0) {
      if (STACK_COMMANDS.has(u.words[0] ?? '')) pending.add(`ceerion ${u.words[0]}`);
      else problems.push(`${u.where}: \`ceerion ${u.words.join(' ')}\` is not a command`);
      continue;
    }
    for (const opt of u.options) {
      if (opt !== '--help' && !node.options.includes(opt)) problems.push(`${u.where}: \`ceerion ${path.map((n) => n.name).join(' ')}\` has no option ${opt}`);
    }
  }
  t.diagnostic(`${uses.length} commands checked${pending.size ? `; not registered yet (stack commands, built in parallel): ${[...pending].join(', ')}` : ''}`);
  assert.deepEqual(problems, []);
});

test('every `pnpm SCRIPT` in the docs is a package.json script', () => {
  const scripts = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  const problems: string[] = [];
  for (const { where, text } of shellLines()) {
    for (const m of text.replace(/#.*$/, '').matchAll(/(?:^|[\s;&|(])pnpm\s+([a-z][\w:-]*)/g)) {
      const name = m[1]!;
      if (PNPM_BUILTINS.has(name) || name in scripts || STACK_SCRIPTS.has(name)) continue;
      problems.push(`${where}: pnpm ${name} is not a script`);
    }
  }
  assert.deepEqual(problems, []);
});
