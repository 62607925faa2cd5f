// Debian packages the monitoring and Docker tests drive: installed on first use (as root, the way
// the other harnesses install theirs), never skipped. A package that starts a system service
// (prometheus) has it stopped and disabled again: the tests only run its command-line tools.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const installs = new Map<string, Promise<void>>();

async function stopServices(services: string[]): Promise<void> {
  if (!services.length) return;
  if (existsSync('/run/systemd/system')) {
    await exec('systemctl', ['disable', '--now', ...services.map((s) => `${s}.service`)]).catch(() => undefined);
    return;
  }
  for (const s of services) await exec('service', [s, 'stop']).catch(() => undefined);
}

/** Installs `pkg` unless `binary` exists; stops and disables `services` it brings along. */
export function ensureDebianPackage(pkg: string, binary: string, services: string[] = []): Promise<void> {
  let p = installs.get(pkg);
  if (!p) {
    p = (async () => {
      if (existsSync(binary)) return;
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      const install = () => exec('apt-get', ['install', '-y', '-qq', pkg], { env, timeout: 600_000 });
      try {
        await install();
      } catch {
        await exec('apt-get', ['update', '-qq'], { env, timeout: 300_000 });
        await install();
      }
      if (!existsSync(binary)) throw new Error(`apt-get install -y ${pkg} did not provide ${binary}`);
      await stopServices(services);
    })();
    installs.set(pkg, p);
  }
  return p;
}

/** Runs a command; resolves with its exit code and output, never rejects on a non-zero exit. */
export function run(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: opts.cwd, timeout: opts.timeoutMs ?? 60_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(err);
      resolve({ code: typeof err?.code === 'number' ? err.code : 0, out: stdout + stderr });
    });
  });
}

export const PROMTOOL = '/usr/bin/promtool';
/** promtool comes with Debian's prometheus package, which also installs (and may start) the server. */
export const ensurePromtool = () => ensureDebianPackage('prometheus', PROMTOOL, ['prometheus', 'prometheus-node-exporter']);
