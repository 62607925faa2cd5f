/**
 * policyd on several cores: `policyd.workers` processes behind one listener (node:cluster).
 *
 * Why: one policyd process is one thread. Under 64 busy connections it tops out near 17,000
 * requests/s with a quarter of this 2-core machine idle; two processes reached 21,500
 * (bench/README.md, policyd). postfwd2 prefork()s for the same reason.
 *
 * The primary holds no policy state: every count lives in Redis and every policy row in PostgreSQL,
 * exactly as when several machines run policyd. It owns only:
 * - the listening socket: cluster's round-robin hands each accepted connection to one worker, and
 *   Postfix keeps a connection for many requests, so the hand-over is rare;
 * - /metrics: the workers' registries merged over IPC (prom-client's AggregatorRegistry), plus the
 *   worker count and restarts;
 * - restarts: a worker that dies is replaced, after a delay that grows while they keep dying young;
 * - shutdown: SIGTERM to every worker, each drains its sessions as a single process would.
 */
import cluster, { type Worker } from 'node:cluster';
import { existsSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import type { ListenAddress } from '../core/listen.ts';
import type { Logger } from '../core/log.ts';
import { prepareSocketPath } from '../core/unix-socket.ts';

const READY = 'ceerion:policyd-ready';
/** prom-client's own messages: its worker side (AggregatorRegistry) answers these. */
const METRICS_REQ = 'prom-client:getMetricsReq';
const METRICS_RES = 'prom-client:getMetricsRes';
/** A worker that does not answer a scrape in time is left out of that scrape, not the others. */
const SCRAPE_TIMEOUT_MS = 2_000;

type WorkerMetrics = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

interface ReadyMessage {
  type: typeof READY;
  address: string;
  authPolicyPort?: number;
}

/** `policyd.workers`: 0 means one per core, at most 4. */
export function workerCount(configured: number, cores = os.availableParallelism()): number {
  return configured > 0 ? configured : Math.max(1, Math.min(cores, 4));
}

/**
 * Node flags for the workers: the primary's, with a 16 MB young generation instead of the 2 MB the
 * launchers give every service for the milter's sake. policyd allocates a little per request and
 * keeps almost nothing, so a small young generation only means more scavenges: 63 → 52 µs of CPU
 * per request at 64 connections (bench/README.md).
 */
export function workerExecArgv(primary: readonly string[]): string[] {
  return [...primary.filter((a) => !a.startsWith('--max-semi-space-size')), '--max-semi-space-size=16'];
}

/** In a worker: tell the primary this worker is listening. */
export function reportWorkerReady(address: string, authPolicyPort?: number): void {
  const message: ReadyMessage = { type: READY, address, ...(authPolicyPort !== undefined ? { authPolicyPort } : {}) };
  process.send?.(message);
}

/** In a worker: the registry the primary's /metrics merges. */
export function joinClusterMetrics(registry: Registry): void {
  // Constructing one installs the worker's IPC listener for the primary's metrics requests.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
}

export interface PolicydClusterOptions {
  workers: number;
  listen: ListenAddress;
  log: Logger;
  /** A worker's own drain time; the primary waits this plus a margin before SIGKILL. */
  shutdownGraceMs: number;
  /** Tests shorten it; a worker that died young waits this long, doubled per repeat, up to 30 s. */
  restartDelayMs?: number;
  /**
   * Called with the cluster's stop before the first fork, so a SIGTERM that arrives while workers
   * are still starting stops them too, instead of leaving them behind.
   */
  onStop?: (stop: () => Promise<void>) => void;
}

export interface PolicydCluster {
  address: string;
  authPolicyPort?: number;
  /** Live worker processes (pids), for tests and logs. */
  readonly pids: number[];
  /** Serves the merged metrics of every worker, plus the primary's own. */
  metrics: { contentType: string; metrics(): Promise<string> };
  stop(): Promise<void>;
}

/** A worker that dies sooner than this after starting counts as dying young. */
const YOUNG_MS = 10_000;
const MAX_RESTART_DELAY_MS = 30_000;

/** Fork the workers (the same `ceerion policyd` command line) and resolve once every one listens. */
export async function startPolicydCluster(opts: PolicydClusterOptions): Promise<PolicydCluster> {
  const { log } = opts;
  // The primary binds a unix socket for the workers: clear a stale one here, once.
  if (opts.listen.kind === 'unix') await prepareSocketPath(opts.listen.path);
  cluster.setupPrimary({ execArgv: workerExecArgv(process.execArgv) });

  const own = new Registry();
  const alive = new Gauge({ name: 'ceerion_policyd_workers', help: 'policyd worker processes running', registers: [own] });
  const restarts = new Counter({ name: 'ceerion_policyd_worker_restarts_total', help: 'policyd workers that died and were replaced', registers: [own] });

  const workers = new Set<Worker>();
  /** Workers that reported listening: only these are asked for metrics (a starting one cannot answer yet). */
  const listening = new Set<Worker>();
  let stopping = false;
  let restartDelay = opts.restartDelayMs ?? 1_000;
  let first: ReadyMessage | undefined;

  /** A worker; `replacement`: one started after the cluster was up, retried even if it dies starting. */
  const fork = (replacement = false): Promise<ReadyMessage> => {
    const started = Date.now();
    const worker = cluster.fork();
    workers.add(worker);
    alive.set(workers.size);
    return new Promise((resolve, reject) => {
      let ready = false;
      worker.on('message', (m: ReadyMessage) => {
        if (m?.type !== READY || ready) return;
        ready = true;
        listening.add(worker);
        log.info({ worker: worker.id, pid: worker.process.pid }, 'policyd worker listening');
        resolve(m);
      });
      worker.once('exit', (code, signal) => {
        workers.delete(worker);
        listening.delete(worker);
        alive.set(workers.size);
        if (!ready) reject(new Error(`policyd worker ${worker.id} exited (${signal ?? code}) before listening`));
        // At startup a worker that cannot start fails the start; later one is retried, backing off.
        if (stopping || (!ready && !replacement)) return;
        restarts.inc();
        const young = Date.now() - started < YOUNG_MS;
        const delay = young ? restartDelay : (opts.restartDelayMs ?? 1_000);
        restartDelay = young ? Math.min(restartDelay * 2, MAX_RESTART_DELAY_MS) : (opts.restartDelayMs ?? 1_000);
        log.error({ worker: worker.id, pid: worker.process.pid, code, signal, restartInMs: delay }, 'policyd worker died; starting a new one');
        // Not unref'd: with every worker gone, this timer is what keeps the primary alive.
        setTimeout(() => {
          if (stopping) return;
          fork(true).catch((err: Error) => log.error({ err: err.message }, 'policyd replacement worker failed to start'));
        }, delay);
      });
    });
  };

  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    const exits = [...workers].map((w) => new Promise<void>((r) => (w.isDead() ? r() : w.once('exit', () => r()))));
    for (const w of workers) w.process.kill('SIGTERM');
    const deadline = setTimeout(() => {
      log.warn({ workers: workers.size }, 'policyd workers still running after the grace period; killing them');
      for (const w of workers) w.process.kill('SIGKILL');
    }, opts.shutdownGraceMs + 3_000);
    await Promise.all(exits);
    clearTimeout(deadline);
    if (opts.listen.kind === 'unix' && existsSync(opts.listen.path)) unlinkSync(opts.listen.path);
  };

  let scrapes = 0;
  /** One worker's registries as JSON, over prom-client's IPC messages; [] if it cannot answer. */
  const ask = (worker: Worker, requestId: string) =>
    new Promise<WorkerMetrics[]>((resolve) => {
      const done = (value: WorkerMetrics[]) => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        resolve(value);
      };
      const onMessage = (m: { type?: string; requestId?: string; metrics?: WorkerMetrics[]; error?: string }) => {
        if (m?.type !== METRICS_RES || m.requestId !== requestId) return;
        if (m.error) log.warn({ worker: worker.id, err: m.error }, 'policyd worker failed to collect its metrics');
        done(m.metrics ?? []);
      };
      const onExit = () => done([]);
      const timer = setTimeout(() => {
        log.warn({ worker: worker.id }, 'policyd worker did not answer the metrics scrape in time; left out');
        done([]);
      }, SCRAPE_TIMEOUT_MS);
      worker.on('message', onMessage);
      worker.once('exit', onExit);
      try {
        worker.send({ type: METRICS_REQ, requestId });
      } catch {
        done([]);
      }
    });

  opts.onStop?.(stop);
  try {
    const ready = await Promise.all(Array.from({ length: opts.workers }, () => fork()));
    first = ready[0]!;
  } catch (err) {
    // Stopped while starting (SIGTERM): the lifecycle that called stop() exits the process once
    // it has finished; a startup error here would only race it with a misleading message.
    if (stopping) return new Promise<never>(() => {});
    await stop();
    throw err;
  }
  log.info({ workers: opts.workers, address: first.address }, 'policyd cluster listening');
  return {
    address: first.address,
    ...(first.authPolicyPort !== undefined ? { authPolicyPort: first.authPolicyPort } : {}),
    get pids() {
      return [...workers].map((w) => w.process.pid!).filter(Boolean);
    },
    metrics: {
      contentType: own.contentType,
      async metrics() {
        const requestId = `ceerion-${++scrapes}`;
        const replies = await Promise.all([...listening].map((w) => ask(w, requestId)));
        // Counters add up across workers; prom-client's per-metric aggregators decide the rest.
        const merged = AggregatorRegistry.aggregate(replies.flat());
        return `${await merged.metrics()}\n${await own.metrics()}`;
      },
    },
    stop,
  };
}
