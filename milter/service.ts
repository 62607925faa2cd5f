/** Wires the milter from the validated config: checks → pipeline → handler factory → server. */
// First, before anything loads mailauth: memoizes parsed DKIM keys (see key-cache.ts).
import './checks/auth/key-cache.ts';
import type { Registry } from 'prom-client';
import type { Config } from '../core/config/schema.ts';
import { parseListen } from '../core/listen.ts';
import type { Logger } from '../core/log.ts';
import type { DnsResolver } from '../core/dns/types.ts';
import { antivirusCheck } from './checks/antivirus.ts';
import { dkimSignCheck } from './checks/dkim-sign.ts';
import { KeyStore } from './dkim/key-store.ts';
import { authenticationCheck } from './checks/auth/authentication.ts';
import { CheckPipeline } from './checks/pipeline.ts';
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
}

/**
 * The configured checks, in order: authentication first (a DMARC reject spares the rest), then
 * antivirus, DKIM signing (outbound), any extra checks, and the trace header always last so it
 * can record every result.
 */
export function buildChecks(config: Config, deps: Partial<Pick<MilterServiceDeps, 'checks' | 'resolver' | 'registry'>> = {}): Check[] {
  const { auth, antivirus, dkimSign, trace } = config.milter.checks;
  const checks: Check[] = [];
  if (auth.enabled) {
    if (!deps.resolver) throw new Error('milter.checks.auth is enabled but no DNS resolver was given');
    checks.push(authenticationCheck(auth, { resolver: deps.resolver, authservId: auth.authservId || config.hostname, ...(deps.registry ? { registry: deps.registry } : {}) }));
  }
  if (antivirus.enabled) checks.push(antivirusCheck(antivirus, deps.registry ? { registry: deps.registry } : {}));
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
