/** Wires the milter from the validated config: checks → pipeline → handler factory → server. */
import type { Registry } from 'prom-client';
import type { Config } from '../core/config/schema.ts';
import { parseListen } from '../core/listen.ts';
import type { Logger } from '../core/log.ts';
import { CheckPipeline } from './checks/pipeline.ts';
import { traceHeaderCheck } from './checks/trace-header.ts';
import type { Check } from './checks/types.ts';
import { MilterMetrics } from './metrics.ts';
import { PipelineHandler, pipelineNeeds } from './pipeline-handler.ts';
import { MilterServer } from './server.ts';

export interface MilterServiceDeps {
  log: Logger;
  registry: Registry;
  /** Checks to run before the trace header (later issues: auth, antivirus, classifier). */
  checks?: Check[];
}

/** The configured checks, in order; the trace header always runs last so it can record the verdict. */
export function buildChecks(config: Config, extra: Check[] = []): Check[] {
  const trace = config.milter.checks.trace;
  const checks = [...extra];
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
  const pipeline = new CheckPipeline(buildChecks(config, deps.checks), {
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
