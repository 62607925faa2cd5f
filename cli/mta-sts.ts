/** `ceerion mta-sts serve` (the policy web server) and `ceerion mta-sts show DOMAIN`. */
import type { Command } from 'commander';
import { parseListen } from '../core/listen.ts';
import { policyFor, POLICY_PATH, txtRecord } from '../mta-sts/policy.ts';
import { startMtaStsServer } from '../mta-sts/server.ts';
import { loadOrExit, startRuntime, withServiceOptions, type ServiceOptions } from './runtime.ts';

function fail(message: string, code: number): never {
  process.stderr.write(`ceerion mta-sts: ${message}\n`);
  process.exit(code);
}

export function registerMtaStsCommands(program: Command): void {
  const sts = program.command('mta-sts').description('MTA-STS (RFC 8461): serve each domain\'s policy for https://mta-sts.DOMAIN/ behind a TLS proxy');

  withServiceOptions(sts.command('serve').description(`serve ${POLICY_PATH} for the domains in mtaSts.policies (plain HTTP; default 127.0.0.1:10045)`)).action(
    async (opts: ServiceOptions) => {
      const loaded = loadOrExit(opts);
      let config = loaded;
      if (opts.listen) {
        // --listen in the same Postfix notation as the other services; only TCP makes sense here.
        let addr;
        try {
          addr = parseListen(opts.listen);
        } catch (err) {
          fail(`--listen: ${(err as Error).message}`, 2);
        }
        if (addr.kind !== 'tcp') fail('--listen must be inet:HOST:PORT (the reverse proxy connects over TCP)', 2);
        config = { ...loaded, mtaSts: { ...loaded.mtaSts, host: addr.host, port: addr.port } };
      }
      const rt = await startRuntime(config, 'mta-sts');
      const server = await startMtaStsServer({ config: config.mtaSts, log: rt.log, registry: rt.registry });
      rt.lifecycle.add({ name: 'mta-sts', stop: () => server.stop() });
      if (server.policies.size === 0) rt.log.warn('no domains in mtaSts.policies: every request gets 404');
      process.stderr.write(`mta-sts on http://${config.mtaSts.host}:${server.port}${POLICY_PATH} for ${[...server.policies.keys()].map((d) => `mta-sts.${d}`).join(', ') || '(no domains)'}\n`);
    },
  );

  sts
    .command('show <domain>')
    .description('print the policy served for a domain and the _mta-sts TXT record that goes with it')
    .option('-c, --config <file>', 'YAML configuration file (CEERION_* environment variables override it)')
    .action((domain: string, opts: ServiceOptions) => {
      const config = loadOrExit(opts);
      const policy = policyFor(config.mtaSts, domain);
      if (!policy) fail(`no policy for ${domain} in mtaSts.policies`, 1);
      process.stdout.write(`# https://mta-sts.${policy.domain}${POLICY_PATH}\n${policy.text.replace(/\r\n/g, '\n')}\n`);
      process.stdout.write(`# DNS\n_mta-sts.${policy.domain}.\tIN\tTXT\t"${txtRecord(policy.text)}"\n`);
    });
}
