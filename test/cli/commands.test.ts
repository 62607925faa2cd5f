// The table that lets a command load only its own module must say exactly what each module
// registers; otherwise `ceerion X` would fail with "unknown command" while `--help` lists X.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { COMMAND_MODULES, modulesFor } from '../../cli/commands.ts';

const run = promisify(execFile);
const BIN = path.resolve(import.meta.dirname, '../../bin/ceerion.mjs');

test('each module registers exactly the commands the table gives it, and no command is in two modules', async () => {
  const seen = new Set<string>();
  for (const m of COMMAND_MODULES) {
    const program = new Command('ceerion');
    (await m.load())(program);
    assert.deepEqual(program.commands.map((c) => c.name()), [...m.commands]);
    for (const c of m.commands) {
      assert.ok(!seen.has(c), `${c} is in two modules`);
      seen.add(c);
    }
  }
});

test('a command loads only its module; options, no command or an unknown one load them all', () => {
  assert.deepEqual(modulesFor(['node', 'ceerion', 'policyd', '--listen', 'x']).map((m) => m.commands), [['milter', 'policyd', 'lmtp', 'postfix-config']]);
  assert.deepEqual(modulesFor(['node', 'ceerion', 'status']).map((m) => m.commands), [['start', 'stop', 'status']]);
  for (const argv of [['node', 'ceerion'], ['node', 'ceerion', '--help'], ['node', 'ceerion', 'bogus'], ['node', 'ceerion', 'help']]) {
    assert.equal(modulesFor(argv).length, COMMAND_MODULES.length, argv.join(' '));
  }
});

test('ceerion --help lists every command; a command still gets its own help and errors', async () => {
  const help = (await run(process.execPath, [BIN, '--help'])).stdout;
  for (const m of COMMAND_MODULES) for (const c of m.commands) assert.match(help, new RegExp(`^  ${c}\\b`, 'm'), c);
  assert.match((await run(process.execPath, [BIN, 'dkim', '--help'])).stdout, /keygen/);
  const unknown = await run(process.execPath, [BIN, 'statsu']).then(
    () => assert.fail('an unknown command must fail'),
    (err: { code: number; stderr: string }) => err,
  );
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /unknown command 'statsu'[\s\S]*status/);
});
