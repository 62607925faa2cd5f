/**
 * The long-running services (milter, policyd, LMTP indexer) and the milter's Postfix snippet. Kept
 * apart from the other commands so a service process loads only what it runs (cli/commands.ts).
 */
import type { Command } from 'commander';
import { postfixSnippet } from '../milter/postfix-snippet.ts';
import { startMilterService } from '../milter/service.ts';
import { startPolicyService } from '../policyd/service.ts';
import { startLmtpService } from '../lmtp-indexer/service.ts';
import { createResolver } from '../core/dns/index.ts';
import type { Logger } from '../core/log.ts';
import { loadOrExit, startRuntime, withServiceOptions, type Runtime, type ServiceOptions } from './runtime.ts';

/**
 * The milter with its DNS resolver (and the classifier and learn endpoint, when enabled),
 * registered for shutdown; resolves to the address it listens on.
 */
async function runMilter(rt: Runtime, log: Logger): Promise<string> {
  const dns = createResolver(rt.config.dns, { log });
  const service = await startMilterService(rt.config, { log, registry: rt.registry, resolver: dns.resolve }).catch(async (err: unknown) => {
    await dns.close();
    throw err;
  });
  rt.lifecycle.add({ name: 'milter', stop: () => service.stop().then(() => dns.close()) });
  return service.address;
}

/** The policy service (Postfix policy delegation + Dovecot auth policy), registered for shutdown. */
async function runPolicyd(rt: Runtime, log: Logger) {
  const service = await startPolicyService(rt.config, { log, registry: rt.registry });
  rt.lifecycle.add({ name: 'policyd', stop: () => service.stop() });
  return service;
}

/** The LMTP indexer (LMTP from Postfix, relay to Dovecot, index, HTTP API), registered for shutdown. */
async function runLmtp(rt: Runtime, log: Logger) {
  const service = await startLmtpService(rt.config, { log, registry: rt.registry });
  rt.lifecycle.add({ name: 'lmtp', stop: () => service.stop() });
  return service;
}

export function registerServiceCommands(program: Command): void {
  withServiceOptions(program.command('milter').description('run the Sendmail milter (Postfix smtpd_milters)')).action(
    async (opts: ServiceOptions) => {
      const config = loadOrExit(opts, 'milter');
      const rt = await startRuntime(config, 'milter');
      await runMilter(rt, rt.log);
    },
  );

  withServiceOptions(
    program.command('policyd').description('run the policy service (Postfix check_policy_service, Dovecot auth policy)'),
  ).action(async (opts: ServiceOptions) => {
    const config = loadOrExit(opts, 'policyd');
    const rt = await startRuntime(config, 'policyd');
    const service = await runPolicyd(rt, rt.log);
    process.stderr.write(`policyd on ${service.address}${service.authPolicyPort !== undefined ? `, auth policy on http://${config.authPolicy.host}:${service.authPolicyPort}/` : ''}\n`);
  });

  withServiceOptions(
    program.command('lmtp').description('run the LMTP indexer (Postfix virtual_transport → Dovecot LMTP, PostgreSQL index, search/events API)'),
  ).action(async (opts: ServiceOptions) => {
    const config = loadOrExit(opts, 'lmtp');
    const rt = await startRuntime(config, 'lmtp');
    const service = await runLmtp(rt, rt.log);
    process.stderr.write(`lmtp indexer on ${service.address}${service.httpPort !== undefined ? `, API on http://${config.lmtp.http.host}:${service.httpPort}/` : ''}\n`);
  });

  program
    .command('postfix-config')
    .description('print the main.cf lines for the milter')
    .option('-c, --config <file>', 'YAML configuration file')
    .option('-l, --listen <address>', 'the milter address Postfix should use')
    .action((opts: ServiceOptions) => {
      const config = loadOrExit(opts, 'milter');
      process.stdout.write(postfixSnippet(config.milter.listen));
    });
}
