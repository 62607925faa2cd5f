#!/usr/bin/env -S node --max-semi-space-size=2
// The `ceerion` CLI. Sources are TypeScript, loaded through tsx so there is no build step.
// --max-semi-space-size=2 (a 2 MB young generation): a milter under load keeps its RSS under
// 200 MB at 64 connections, for ~1% of throughput (bench/README.md). The shebang, package.json
// scripts and the Docker image all start node with it; it cannot be set once node runs.
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
