/**
 * `ceerion backup drill --docker`: a throwaway PostgreSQL container as the scratch target, through
 * dockerode, for hosts where the drill must not touch a real server. The image matches the
 * backup's server major version (pg_restore refuses archives from a newer pg_dump, and a restore
 * into an older server can fail). The container is removed afterwards, also after a failure.
 */
import { randomBytes } from 'node:crypto';
import Docker from 'dockerode';

export interface DockerTarget {
  url: string;
  stop(): Promise<void>;
}

export async function dockerReachable(docker = new Docker()): Promise<boolean> {
  try {
    await docker.ping();
    return true;
  } catch {
    return false;
  }
}

export async function startDockerPostgres(serverVersion: string, opts: { docker?: Docker; readyTimeoutMs?: number } = {}): Promise<DockerTarget> {
  const docker = opts.docker ?? new Docker();
  if (!(await dockerReachable(docker))) {
    throw new Error('--docker: no Docker engine is reachable (DOCKER_HOST or /var/run/docker.sock); use --target postgres://… instead');
  }
  const major = /^(\d+)/.exec(serverVersion)?.[1] ?? '16';
  const image = `postgres:${major}`;
  const password = randomBytes(12).toString('hex');
  await new Promise<void>((resolve, reject) => {
    docker.pull(image, (err: Error | null, stream: NodeJS.ReadableStream) => {
      if (err) return reject(new Error(`docker pull ${image}: ${err.message}`));
      docker.modem.followProgress(stream, (e: Error | null) => (e ? reject(e) : resolve()));
    });
  });
  const container = await docker.createContainer({
    Image: image,
    Env: [`POSTGRES_PASSWORD=${password}`],
    Labels: { 'ceerion.drill': '1' },
    HostConfig: { AutoRemove: true, PortBindings: { '5432/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] } },
    ExposedPorts: { '5432/tcp': {} },
  });
  const stop = async () => {
    await container.stop({ t: 2 }).catch(() => undefined);
    await container.remove({ force: true }).catch(() => undefined);
  };
  try {
    await container.start();
    const info = await container.inspect();
    const port = info.NetworkSettings.Ports['5432/tcp']?.[0]?.HostPort;
    if (!port) throw new Error('the container published no port for 5432');
    const url = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
    const pg = (await import('pg')).default;
    for (;;) {
      const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
      c.on('error', () => undefined);
      try {
        await c.connect();
        await c.query('SELECT 1');
        await c.end();
        break;
      } catch (err) {
        await c.end().catch(() => undefined);
        if (Date.now() > deadline) throw new Error(`the drill container did not accept connections: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    return { url, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
