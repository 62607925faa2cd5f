/**
 * `ceerion start --docker` (or by default when a Docker engine answers): the same stack as
 * containers, `docker compose -f docker-compose.mail.yml up -d --wait`, which returns once every
 * service with a health check is healthy. Secrets come from .env (see .env.mail.example).
 */
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
export const COMPOSE_FILE = path.join(ROOT, 'docker-compose.mail.yml');

/** A Docker engine answers within 3 s (the CLI alone, without an engine, does not count). */
export function dockerAnswers(): boolean {
  const r = spawnSync('docker', ['version', '--format', '{{.Server.Version}}'], { timeout: 3_000, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return r.status === 0 && r.stdout.trim() !== '';
}

export function startDocker(say: (line: string) => void): Promise<number> {
  say(`docker compose -f ${path.relative(process.cwd(), COMPOSE_FILE) || COMPOSE_FILE} up -d --wait`);
  return new Promise((resolve) => {
    const child = spawn('docker', ['compose', '-f', COMPOSE_FILE, 'up', '-d', '--build', '--wait'], { cwd: ROOT, stdio: 'inherit' });
    child.once('error', (err) => {
      say(`docker compose could not run: ${err.message}`);
      resolve(1);
    });
    child.once('close', (code) => resolve(code ?? 1));
  });
}
