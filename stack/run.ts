/**
 * `ceerion start`: plan the stack, start it stage by stage under the supervisor, provision
 * (migrations, test account, DKIM keys) once the database is up, publish the state file, print how
 * to use it, and stop everything in order on SIGINT/SIGTERM (or `ceerion stop`).
 */
import { createWriteStream, mkdirSync } from 'node:fs';
import pino from 'pino';
import type { Config } from '../core/config/schema.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { LOG_FILE, type StackCredentials, type StackState } from './contracts.ts';
import { planStack, type StackPlan } from './plan.ts';
import { provision } from './provision.ts';
import { isAlive, readState, StateWriter } from './state-file.ts';
import { Supervisor } from './supervisor.ts';
import { banner } from './banner.ts';
import { trainStarterModel } from './starter-model-process.ts';
import { serveStackMetrics } from './metrics.ts';

export interface StartOptions {
  configFile?: string;
  env: NodeJS.ProcessEnv;
  /** Human progress lines (stderr). */
  say: (line: string) => void;
}

export interface RunningStack {
  plan: StackPlan;
  state: () => StackState;
  credentials: StackCredentials;
  stop: () => Promise<void>;
}

function supervisorLogger(config: Config, varDir: string): Logger {
  mkdirSync(`${varDir}/log`, { recursive: true });
  const file = createWriteStream(LOG_FILE(varDir, 'supervisor'), { flags: 'a' });
  return createLogger(config.log.level, 'supervisor', pino.multistream([{ stream: file, level: config.log.level as pino.Level }]));
}

export async function startStack(config: Config, opts: StartOptions): Promise<RunningStack> {
  const started = Date.now();
  const previous = readState(config.stack.varDir);
  if (previous && !previous.stopping && isAlive(previous.supervisorPid) && previous.supervisorPid !== process.pid) {
    throw new Error(`a stack is already running from ${previous.varDir} (supervisor pid ${previous.supervisorPid}); stop it with \`pnpm mail:stop\``);
  }
  const plan = await planStack(config, { ...(opts.configFile ? { configFile: opts.configFile } : {}), env: opts.env });
  const log = supervisorLogger(config, plan.varDir);
  let ready = false;
  let readyMs: number | undefined;
  let stopping = false;
  let classifierModel: StackState['classifierModel'];
  const supervisor: Supervisor = new Supervisor(plan.specs, {
    log,
    timing: config.stack,
    onChange: () => void writer.write(),
  });
  const state = (): StackState => ({
    version: 1,
    supervisorPid: process.pid,
    startedAt: new Date(started).toISOString(),
    ready,
    ...(readyMs !== undefined ? { readyMs } : {}),
    stopping,
    varDir: plan.varDir,
    ...(opts.configFile ? { configFile: opts.configFile } : {}),
    domain: config.stack.domain,
    endpoints: plan.endpoints,
    services: supervisor.statuses(),
    ...(classifierModel ? { classifierModel } : {}),
  });
  const writer = new StateWriter(state);
  await writer.write();
  let credentials: StackCredentials | undefined;
  let stopAll = (): Promise<void> => stop();
  // The starter model's trainer (a child process) does not outlive the stack.
  const training = new AbortController();
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    training.abort();
    await writer.write();
    await supervisor.stop();
    await writer.write();
    log.info('stack stopped');
  };
  try {
    opts.say(`starting ${plan.specs.map((s) => s.name).join(', ')} (logs in ${plan.varDir}/log)`);
    await supervisor.start(async () => {
      // After the first stage (the private database and Redis, when there are): migrate and
      // provision before Dovecot and Postfix read the accounts.
      if (credentials) return;
      credentials = await provision({
        varDir: plan.varDir,
        database: plan.database,
        domain: config.stack.domain,
        keysDir: plan.keysDir,
        selector: config.milter.checks.dkimSign.selector,
        algorithms: config.milter.checks.dkimSign.algorithms,
        log,
      });
    });
    if (!credentials) throw new Error('the stack started no service');
  } catch (err) {
    log.error({ err: (err as Error).message }, 'start failed; stopping');
    await stop();
    throw err;
  }
  if (config.metrics.enabled) {
    const metrics = await serveStackMetrics(config, plan.varDir, { log, statuses: () => supervisor.statuses(), postfix: plan.endpoints.smtp !== undefined });
    plan.endpoints.metrics.supervisor = `http://${config.metrics.host}:${config.stack.metricsPorts.supervisor}/metrics`;
    const stopServices = stop;
    stopAll = async () => {
      await stopServices();
      await metrics.stop();
    };
  }
  ready = true;
  readyMs = Date.now() - started;
  await writer.write();
  log.info({ readyMs }, 'stack ready');
  opts.say(banner(state(), credentials, plan.notes));
  if (config.classifier.enabled) {
    // In the background, after readiness: training takes ~15 s, and mail flows meanwhile (an
    // untrained classifier keeps everything in the inbox). The milter loads the model when it is
    // activated (NOTIFY).
    classifierModel = 'training';
    await writer.write();
    void trainStarterModel(plan, log, training.signal).then(
      (outcome) => {
        classifierModel = outcome;
        if (outcome === 'trained') opts.say('classifier: starter model trained from the SpamAssassin public corpus and activated');
        return writer.write();
      },
      (err: Error) => {
        // Stopped with the stack: the next start trains (nothing was stored).
        if (training.signal.aborted) return log.info('starter model training stopped with the stack');
        classifierModel = 'failed';
        log.error({ err: err.message }, 'starter model training failed');
        return writer.write();
      },
    );
  }
  return { plan, state, credentials, stop: () => stopAll() };
}
