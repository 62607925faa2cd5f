#!/usr/bin/env node
// `pnpm test`: every test/**/*.test.ts under node's test runner (TypeScript through tsx).
// Pass file or folder names to run a subset: `pnpm test test/milter/protocol`.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');

function collect(p, out) {
  const st = statSync(p);
  if (st.isDirectory()) {
    for (const name of readdirSync(p).sort()) if (name !== 'node_modules') collect(path.join(p, name), out);
  } else if (p.endsWith('.test.ts')) out.push(p);
  return out;
}

const args = process.argv.slice(2);
const targets = args.length ? args.map((a) => path.resolve(a)) : [path.join(root, 'test')];
const files = targets.flatMap((t) => collect(t, []));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-timeout=180000', `--test-concurrency=${process.env.TEST_CONCURRENCY ?? 2}`, ...files],
  { stdio: 'inherit', cwd: root },
);
process.exit(result.status ?? 1);
