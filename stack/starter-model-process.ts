/**
 * The starter model (starter-model.ts) trained in a child process, `ceerion model starter`, with
 * the services' config and environment. In the supervisor's own process the ~15 s of CPU-bound
 * training blocked its event loop: health checks, restarts, `mail:stop`'s SIGTERM and the metrics
 * endpoint all waited. The child's stderr goes to the supervisor's log, line by line.
 */
import { spawn } from 'node:child_process';
import type { Logger } from '../core/log.ts';
import type { StackPlan } from './plan.ts';
import type { StarterModelOutcome } from './starter-model.ts';

const OUTCOME = /^starter model: (present|trained|unavailable)$/m;

/** `signal` ends the child (SIGTERM), e.g. when the stack stops first; the promise then rejects. */
export function trainStarterModel(plan: Pick<StackPlan, 'cli'>, log: Logger, signal?: AbortSignal): Promise<StarterModelOutcome> {
  const { command, args, env } = plan.cli(['model', 'starter']);
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], ...(signal ? { signal } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
      for (const line of s.split('\n').filter(Boolean)) log.warn({ part: 'starter-model' }, line);
    });
    // An abort emits 'error' (AbortError) and then 'close'; the first settles the promise.
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const outcome = OUTCOME.exec(stdout)?.[1] as StarterModelOutcome | undefined;
      if (code === 0 && outcome) resolve(outcome);
      else reject(new Error(`ceerion model starter ${signal ? `was killed by ${signal}` : `exited with ${code}`}: ${stderr.trim().split('\n').pop() ?? ''}`));
    });
  });
}
