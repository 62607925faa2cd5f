/**
 * Wires the milter from the validated config: checks → pipeline → handler factory → server.
 * `startMilterService` also starts what the checks depend on: the classifier runtime (its model
 * kept in step with PostgreSQL) and the learn endpoint.
 */
// First, before anything loads mailauth: memoizes parsed DKIM keys (see key-cache.ts).
import './checks/auth/key-cache.ts';
import type { Registry } from 'prom-client';
import { ClassifierRuntime } from '../classifier/engine/runtime.ts';
import { LearnHttpServer } from '../classifier/learn/http-server.ts';
import type { Config } from '../core/config/schema.ts';
import { createPool } from '../core/db/pool.ts';
import { parseListen } from '../core/listen.ts';
import type { Logger } from '../core/log.ts';
import type { DnsResolver } from '../core/dns/types.ts';
import { antivirusCheck } from './checks/antivirus.ts';
import { dkimSignCheck } from './checks/dkim-sign.ts';
import { KeyStore } from './dkim/key-store.ts';
import { authenticationCheck } from './checks/auth/authentication.ts';
import { CheckPipeline } from './checks/pipeline.ts';
import { spamCheck, type SpamScorer } from './checks/spam.ts';
import { traceHeaderCheck } from './checks/trace-header.ts';
import type { Check } from './checks/types.ts';
import { MilterMetrics } from './metrics.ts';
import { PipelineHandler, pipelineNeeds } from './pipeline-handler.ts';
import { MilterServer } from './server.ts';

export interface MilterServiceDeps {
  log: Logger;
  registry: Registry;
  /** Checks to run after the built-in ones and before the trace header (tests, later issues). */
  checks?: Check[];
  /** DNS for the authentication checks; required when milter.checks.auth is enabled. */
  resolver?: DnsResolver;
  /**
   * What scores mail for the spam check; required when classifier.enabled (startMilterService
   * starts a ClassifierRuntime for it; tests inject their own).
   */
  scorer?: SpamScorer;
}

/**
 * The configured checks, in order: authentication first (a DMARC reject spares the rest), then
 * antivirus, the spam classifier (after authentication, so it reads this hop's
 * Authentication-Results; after antivirus, whose verdict is cheaper and final), DKIM signing
 * (outbound), any extra checks, and the trace header always last so it can record every result.
 */
export function buildChecks(config: Config, deps: Partial<Pick<MilterServiceDeps, 'checks' | 'resolver' | 'registry' | 'scorer'>> = {}): Check[] {
  const { auth, antivirus, dkimSign, trace } = config.milter.checks;
  const checks: Check[] = [];
  if (auth.enabled) {
    if (!deps.resolver) throw new Error('milter.checks.auth is enabled but no DNS resolver was given');
    checks.push(authenticationCheck(auth, { resolver: deps.resolver, authservId: auth.authservId || config.hostname, ...(deps.registry ? { registry: deps.registry } : {}) }));
  }
  if (antivirus.enabled) checks.push(antivirusCheck(antivirus, deps.registry ? { registry: deps.registry } : {}));
  if (config.classifier.enabled) {
    if (!deps.scorer) throw new Error('classifier is enabled but no scorer was given (startMilterService starts one)');
    checks.push(spamCheck(config.classifier, { scorer: deps.scorer, ...(deps.registry ? { registry: deps.registry } : {}) }));
  }
  if (dkimSign.enabled) {
    // Unsafe or broken key files stop the start with an error naming the file (DkimKeyError).
    const keys = KeyStore.load({ keysDir: dkimSign.keysDir, selector: dkimSign.selector, algorithms: dkimSign.algorithms });
    // No keys, nothing to sign: leave the check out rather than have Postfix send every stage.
    if (keys.domains.length > 0) checks.push(dkimSignCheck(dkimSign, { keys }));
  }
  checks.push(...(deps.checks ?? []));
  if (trace.enabled) {
    checks.push(
      traceHeaderCheck({
        header: trace.header,
        hostname: config.hostname,
        ...(trace.timeoutMs ? { timeoutMs: trace.timeoutMs } : {}),
        onError: trace.onError,
      }),
    );
  }
  return checks;
}

export function createMilterServer(config: Config, deps: MilterServiceDeps): MilterServer {
  const m = config.milter;
  const metrics = new MilterMetrics(deps.registry);
  const pipeline = new CheckPipeline(buildChecks(config, deps), {
    defaultTimeoutMs: m.checks.defaultTimeoutMs,
    defaultOnError: m.checks.defaultOnError,
    metrics,
  });
  const needs = pipelineNeeds(pipeline);
  return new MilterServer({
    listen: parseListen(m.listen),
    socketMode: parseInt(m.socketMode, 8),
    maxFrameBytes: m.maxFrameBytes,
    idleTimeoutMs: m.idleTimeoutMs,
    progressIntervalMs: m.progressIntervalMs,
    shutdownGraceMs: m.shutdownGraceMs,
    noReply: m.noReply,
    log: deps.log,
    metrics,
    handlerFactory: (connId) => new PipelineHandler(connId, pipeline, needs),
  });
}

export interface MilterService {
  server: MilterServer;
  /** Postfix notation of the listening address. */
  address: string;
  /** The classifier this process scores with (classifier.enabled, no scorer injected). */
  classifier?: ClassifierRuntime;
  /** The learn endpoint's port, when it runs. */
  learnPort?: number;
  stop(): Promise<void>;
}

/**
 * The milter plus what its checks need: with classifier.enabled (and no scorer injected) a pool
 * on config.database, a ClassifierRuntime (PostgreSQL down: it scores with an untrained or the
 * last model and keeps retrying) and the learn endpoint when classifier.learn allows it.
 */
export async function startMilterService(config: Config, deps: MilterServiceDeps): Promise<MilterService> {
  const stops: Array<() => Promise<unknown>> = [];
  const stopAll = async (): Promise<void> => {
    for (const stop of stops.reverse()) await stop().catch((err: Error) => deps.log.error({ err: err.message }, 'milter: stop step failed'));
  };
  try {
    let classifier: ClassifierRuntime | undefined;
    let learnPort: number | undefined;
    let scorer = deps.scorer;
    if (config.classifier.enabled && !scorer) {
      const log = deps.log.child({ component: 'classifier' });
      const pool = createPool(config.database, { log, max: 4 });
      stops.push(() => pool.end());
      classifier = await ClassifierRuntime.start({ cfg: config, pool, log });
      stops.push(() => classifier!.close());
      scorer = classifier;
      learnPort = await startLearnEndpoint(config, classifier, log, stops);
    }
    const server = createMilterServer(config, { ...deps, ...(scorer ? { scorer } : {}) });
    const address = await server.start();
    stops.push(() => server.stop());
    return {
      server,
      address,
      ...(classifier ? { classifier } : {}),
      ...(learnPort !== undefined ? { learnPort } : {}),
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

async function startLearnEndpoint(config: Config, classifier: ClassifierRuntime, log: Logger, stops: Array<() => Promise<unknown>>): Promise<number | undefined> {
  const l = config.classifier.learn;
  if (!l.httpEnabled) return undefined;
  if (!l.token) {
    // Said once at start: an open learn endpoint would let anyone poison the model.
    log.info('learn endpoint off: set classifier.learn.token (CEERION_CLASSIFIER_LEARN_TOKEN, at least 16 characters) to enable it');
    return undefined;
  }
  const http = new LearnHttpServer({ learner: classifier.learner(), token: l.token, host: l.host, port: l.port, maxBytes: l.maxMessageBytes, log });
  try {
    const { port } = await http.start();
    stops.push(() => http.close());
    return port;
  } catch (err) {
    // Mail flow matters more than training: a taken port must not keep the milter down.
    log.error({ err: (err as Error).message, host: l.host, port: l.port }, 'learn endpoint could not listen; running without it');
    return undefined;
  }
}
