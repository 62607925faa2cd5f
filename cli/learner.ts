/**
 * `ceerion learner`: learning from users' Junk moves (dovecot-plugins/).
 *   ceerion learner          run the gateway socket Dovecot pipes to, the spool importer and the
 *                            worker that feeds the classifier (also part of `ceerion start`)
 *   ceerion learner status   queued / pending / dead entries and files waiting in the spool
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import type { Config } from '../core/config/schema.ts';
import type { Logger } from '../core/log.ts';
import { createRedis, redisReady } from '../core/redis.ts';
import { LearnQueue } from '../dovecot-plugins/learn/queue.ts';
import { startLearnerService } from '../dovecot-plugins/learn/service.ts';
import { loadOrExit, startRuntime, withServiceOptions, type Runtime, type ServiceOptions } from './runtime.ts';

/** The learner, registered for shutdown. */
export async function runLearner(rt: Runtime, log: Logger) {
  const service = await startLearnerService(rt.config, { log });
  rt.lifecycle.add({ name: 'learner', stop: () => service.stop() });
  return service;
}

async function status(config: Config): Promise<string> {
  const redis = createRedis(config.redis);
  try {
    await redisReady(redis, 3_000);
    const q = config.learn.queue;
    const counts = await new LearnQueue(redis, { stream: q.stream, deadStream: q.deadStream, group: q.group, maxLength: q.maxLength }).counts();
    const spooled = (await readdir(path.join(config.learn.spool.dir, 'new')).catch(() => [])).length;
    const bad = (await readdir(path.join(config.learn.spool.dir, 'bad')).catch(() => [])).length;
    return (
      `queued   ${counts.queued} (of which pending, read by a worker: ${counts.pending})\n` +
      `dead     ${counts.dead} (XRANGE ${config.redis.keyPrefix}${q.deadStream} - + shows why)\n` +
      `spooled  ${spooled} in ${path.join(config.learn.spool.dir, 'new')}${bad ? ` (+${bad} unreadable in bad/)` : ''}\n` +
      `gateway  ${config.learn.gateway.socket || '(off)'}\n`
    );
  } finally {
    redis.disconnect();
  }
}

export function registerLearnerCommands(program: Command): void {
  const learner = withServiceOptions(
    program.command('learner').description("learn from users' Junk moves: the socket Dovecot's IMAPSieve pipes to, and the worker that trains the classifier"),
  ).action(async (opts: ServiceOptions) => {
    const config = loadOrExit(opts);
    const rt = await startRuntime(config, 'learner');
    const service = await runLearner(rt, rt.log);
    process.stderr.write(
      `learner running: ${service.gateway ? `gateway on ${config.learn.gateway.socket}, ` : ''}spool ${config.learn.spool.dir}${service.worker ? ', worker on' : ''}\n`,
    );
  });
  learner
    .command('status')
    .description('entries queued, pending and dead, and files in the spool')
    .option('-c, --config <file>', 'YAML configuration file')
    .action(async (opts: ServiceOptions) => {
      try {
        process.stdout.write(await status(loadOrExit(opts)));
      } catch (err) {
        process.stderr.write(`ceerion learner status: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    });
}
