// Reading the Docker files for the tests: the compose file as written and as docker-compose
// resolves it (with .env.mail.example), and the COPY instructions of a Dockerfile.
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import path from 'node:path';
import { ROOT } from '../harness/milter-process.ts';
import { run } from '../monitoring/debian.ts';

export interface Service {
  image?: string;
  build?: { context: string; dockerfile?: string };
  environment?: Record<string, string>;
  command?: string[];
  profiles?: string[];
  healthcheck?: { test?: string[]; disable?: boolean };
  volumes?: Mount[];
}
export interface Mount {
  type: 'volume' | 'bind';
  source: string;
  target: string;
  read_only: boolean;
}
export interface Resolved {
  services: Record<string, Service>;
}

/** The file as written (environment values uninterpolated). */
export function composeFile(): { services: Record<string, { environment?: Record<string, string>; profiles?: string[] }>; volumes?: Record<string, unknown> } {
  return YAML.parse(readFileSync(path.join(ROOT, 'docker-compose.mail.yml'), 'utf8'));
}

/** `docker-compose config` with every profile: interpolated, anchors and short syntax expanded. */
export async function resolvedCompose(): Promise<Resolved> {
  const r = await run('/usr/bin/docker-compose', ['-f', 'docker-compose.mail.yml', '--env-file', '.env.mail.example', '--profile', 'monitoring', 'config'], {
    cwd: ROOT,
  });
  if (r.code !== 0) throw new Error(`docker-compose config failed:\n${r.out}`);
  const resolved = YAML.parse(r.out.slice(r.out.indexOf('services:'))) as { services: Record<string, Omit<Service, 'volumes'> & { volumes?: Array<string | Mount> }> };
  for (const svc of Object.values(resolved.services)) svc.volumes = svc.volumes?.map(mount);
  return resolved as Resolved;
}

/** Compose v1 prints volumes in the short syntax, `source:target[:mode]` (bind sources absolute). */
function mount(v: string | Mount): Mount {
  if (typeof v !== 'string') return v;
  const [source, target, mode = 'rw'] = v.split(':') as [string, string, string?];
  return { type: source.startsWith('/') ? 'bind' : 'volume', source, target, read_only: mode.split(',').includes('ro') };
}

/** COPY lines: sources (relative to the build context) and destination. */
export function copies(dockerfile: string): Array<{ sources: string[]; dest: string }> {
  return [...readFileSync(dockerfile, 'utf8').matchAll(/^COPY\s+(.+)$/gm)].map((m) => {
    const parts = m[1]!.trim().split(/\s+/).filter((p) => !p.startsWith('--'));
    return { sources: parts.slice(0, -1), dest: parts.at(-1)! };
  });
}
