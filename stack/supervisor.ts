/**
 * The supervisor behind `ceerion start`: runs each service as a child process with its output
 * appended to its own log file, starts them stage by stage (a stage starts once the one before is
 * healthy), restarts a service that exits unexpectedly with exponential backoff, re-checks health
 * periodically, and stops everything in reverse order.
 *
 * Children run in their own process groups (detached), so a Ctrl-C in the terminal reaches only
 * the supervisor, which then stops the services in order: Postfix before the milter it calls, the
 * milter before Redis, and so on, instead of everything dying at once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../core/log.ts';
import type { StackConfig } from '../core/config/stack.ts';
import type { ServiceName, ServiceState, ServiceStatus } from './contracts.ts';
import type { HealthCheck } from './health.ts';

export interface ServiceSpec {
  name: ServiceName;
  kind: 'suite' | 'daemon';
  /** Lower stages start first; each stage must be healthy before the next starts. */
  stage: number;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  uid?: number;
  gid?: number;
  logFile: string;
  health: HealthCheck;
  /** Default SIGTERM. PostgreSQL: SIGINT (fast shutdown: sessions are ended, nothing is lost). */
  stopSignal?: NodeJS.Signals;
  /** A command that stops the service (Postfix: `postfix stop`); the signal is the fallback. */
  stopCommand?: () => Promise<void>;
  /** Before every start (first and restarts): stale pid files, sockets. */
  beforeStart?: () => Promise<void>;
}

export class StackStartError extends Error {
  constructor(
    readonly service: ServiceName,
    message: string,
  ) {
    super(message);
    this.name = 'StackStartError';
  }
}

type Timing = Pick<StackConfig, 'restart' | 'readyTimeoutMs' | 'healthIntervalMs' | 'stopTimeoutMs'>;

interface Running {
  spec: ServiceSpec;
  state: ServiceState;
  child?: ChildProcess;
  restarts: number;
  /** Crashes in a row without a long enough run in between: sets the backoff. */
  streak: number;
  startedAt: number;
  lastExit?: ServiceStatus['lastExit'];
  timer?: NodeJS.Timeout;
  exited?: Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Supervisor {
  private readonly services: Running[];
  private stopping = false;
  private healthTimer?: NodeJS.Timeout;

  constructor(
    specs: ServiceSpec[],
    private readonly opts: { log: Logger; timing: Timing; onChange?: () => void; now?: () => number },
  ) {
    this.services = [...specs].sort((a, b) => a.stage - b.stage).map((spec) => ({ spec, state: 'stopped', restarts: 0, streak: 0, startedAt: 0 }));
  }

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  statuses(): ServiceStatus[] {
    return this.services.map((s) => ({
      name: s.spec.name,
      kind: s.spec.kind,
      state: s.state,
      ...(s.child?.pid !== undefined && s.child.exitCode === null && s.child.signalCode === null ? { pid: s.child.pid } : {}),
      restarts: s.restarts,
      ...(s.lastExit ? { lastExit: s.lastExit } : {}),
      health: s.spec.health.describe,
      logFile: s.spec.logFile,
    }));
  }

  private set(s: Running, state: ServiceState): void {
    if (s.state === state) return;
    s.state = state;
    this.opts.onChange?.();
  }

  /**
   * Starts stage by stage; `afterStage` runs once a stage is healthy (migrations need the database
   * up, and must finish before the services using it start). Rejects if a service is not healthy
   * in time; the caller then stops what started.
   */
  async start(afterStage?: (stage: number) => Promise<void>): Promise<void> {
    const stages = [...new Set(this.services.map((s) => s.spec.stage))];
    for (const stage of stages) {
      const group = this.services.filter((s) => s.spec.stage === stage);
      for (const s of group) await this.launch(s);
      await Promise.all(group.map((s) => this.waitHealthy(s)));
      if (this.stopping) return;
      await afterStage?.(stage);
    }
    this.healthTimer = setInterval(() => void this.recheck(), this.opts.timing.healthIntervalMs);
    this.healthTimer.unref();
  }

  private async launch(s: Running): Promise<void> {
    const { spec } = s;
    await spec.beforeStart?.();
    mkdirSync(path.dirname(spec.logFile), { recursive: true });
    // The child writes its log itself (an inherited descriptor), so logs survive the supervisor.
    const fd = openSync(spec.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(spec.command, spec.args, {
        cwd: spec.cwd ?? process.cwd(),
        env: spec.env ?? process.env,
        stdio: ['ignore', fd, fd],
        detached: true,
        ...(spec.uid !== undefined ? { uid: spec.uid } : {}),
        ...(spec.gid !== undefined ? { gid: spec.gid } : {}),
      });
    } finally {
      closeSync(fd);
    }
    s.child = child;
    s.startedAt = this.now();
    this.set(s, 'starting');
    this.opts.log.info({ service: spec.name, pid: child.pid }, 'service started');
    s.exited = new Promise((resolve) => {
      child.once('error', (err) => {
        this.opts.log.error({ service: spec.name, err: err.message }, 'service could not be started');
      });
      child.once('close', (code, signal) => {
        s.lastExit = { code, signal, at: new Date(this.now()).toISOString() };
        resolve();
        this.onExit(s, child, code, signal);
      });
    });
  }

  private onExit(s: Running, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (s.child !== child) return;
    if (this.stopping) {
      this.set(s, 'stopped');
      return;
    }
    const { restart } = this.opts.timing;
    if (this.now() - s.startedAt >= restart.resetAfterMs) s.streak = 0;
    const delay = Math.min(restart.maxDelayMs, restart.initialDelayMs * 2 ** s.streak);
    s.streak++;
    s.restarts++;
    this.set(s, 'restarting');
    this.opts.log.warn({ service: s.spec.name, code, signal, restartInMs: delay, restarts: s.restarts }, 'service exited unexpectedly; restarting');
    s.timer = setTimeout(() => {
      s.timer = undefined;
      if (this.stopping) return;
      this.launch(s)
        .then(() => this.waitHealthy(s, Infinity))
        .catch((err: Error) => this.opts.log.error({ service: s.spec.name, err: err.message }, 'restart failed'));
    }, delay);
  }

  /** Polls the health check until it passes; at start, fails after readyTimeoutMs. */
  private async waitHealthy(s: Running, timeoutMs = this.opts.timing.readyTimeoutMs): Promise<void> {
    const child = s.child;
    const deadline = this.now() + timeoutMs;
    for (let step = 50; ; step = Math.min(step * 2, 500)) {
      if (this.stopping || s.child !== child) return;
      if (await s.spec.health.check()) {
        if (s.child === child && !this.stopping) {
          this.set(s, 'healthy');
          this.opts.log.info({ service: s.spec.name, ms: this.now() - s.startedAt }, 'service healthy');
        }
        return;
      }
      if (this.now() >= deadline) {
        throw new StackStartError(s.spec.name, `${s.spec.name} did not become healthy within ${timeoutMs} ms (${s.spec.health.describe}); see ${s.spec.logFile}`);
      }
      await sleep(step);
    }
  }

  private async recheck(): Promise<void> {
    for (const s of this.services) {
      if (s.state !== 'healthy' && s.state !== 'unhealthy') continue;
      const ok = await s.spec.health.check();
      if (this.stopping || (s.state !== 'healthy' && s.state !== 'unhealthy')) continue;
      if (!ok && s.state === 'healthy') this.opts.log.warn({ service: s.spec.name, check: s.spec.health.describe }, 'service unhealthy');
      if (ok && s.state === 'unhealthy') this.opts.log.info({ service: s.spec.name }, 'service healthy again');
      this.set(s, ok ? 'healthy' : 'unhealthy');
    }
  }

  /** Stops every service in reverse start order; each gets stopTimeoutMs before SIGKILL. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.healthTimer) clearInterval(this.healthTimer);
    for (const s of [...this.services].reverse()) {
      if (s.timer) clearTimeout(s.timer);
      const child = s.child;
      if (!child || child.exitCode !== null || child.signalCode !== null) {
        this.set(s, 'stopped');
        continue;
      }
      this.set(s, 'stopping');
      try {
        if (s.spec.stopCommand) await s.spec.stopCommand();
        else child.kill(s.spec.stopSignal ?? 'SIGTERM');
      } catch (err) {
        this.opts.log.warn({ service: s.spec.name, err: (err as Error).message }, 'stop command failed; signalling');
        child.kill(s.spec.stopSignal ?? 'SIGTERM');
      }
      const timedOut = await Promise.race([s.exited!.then(() => false), sleep(this.opts.timing.stopTimeoutMs).then(() => true)]);
      if (timedOut) {
        this.opts.log.warn({ service: s.spec.name }, 'service did not stop in time; killing its process group');
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
        await s.exited;
      }
      this.set(s, 'stopped');
      this.opts.log.info({ service: s.spec.name }, 'service stopped');
    }
  }
}
