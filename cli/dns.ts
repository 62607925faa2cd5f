/** `ceerion dns records DOMAIN` and `ceerion dns check DOMAIN`. */
import type { Command } from 'commander';
import { checkRecords, expectedRecords, zoneFile, type RecordOptions } from '../admin/dns-records.ts';
import { createResolver } from '../core/dns/index.ts';
import { silentLogger } from '../core/log.ts';
import { table } from '../core/text-table.ts';
import { KeyStore } from '../milter/dkim/key-store.ts';
import { withMtaStsPolicy } from '../mta-sts/dns.ts';
import { policyFor } from '../mta-sts/policy.ts';
import { loadOrExit, type ServiceOptions } from './runtime.ts';

interface DnsOptions extends ServiceOptions {
  mx?: string;
  dmarcPolicy?: RecordOptions['dmarcPolicy'];
  report?: string;
  server?: string[];
}

function records(domain: string, opts: DnsOptions) {
  const config = loadOrExit(opts);
  const sign = config.milter.checks.dkimSign;
  const keys = KeyStore.load({ keysDir: sign.keysDir, selector: sign.selector, algorithms: sign.algorithms });
  // A domain in mtaSts.policies gets the id `ceerion mta-sts serve` serves (a hash of its policy).
  const sts = policyFor(config.mtaSts, domain);
  const list = withMtaStsPolicy(expectedRecords(domain, {
    mxHost: opts.mx ?? config.hostname,
    keys: keys.keysOf(domain.toLowerCase()).filter((k) => k.selector === sign.selector),
    dmarcPolicy: opts.dmarcPolicy ?? 'quarantine',
    ...(opts.report ? { reportAddress: opts.report } : {}),
    ...(sts ? { mtaStsId: sts.id } : {}),
  }), sts);
  return { config, list };
}

const options = (cmd: Command) =>
  cmd
    .option('-c, --config <file>', 'YAML configuration file')
    .option('--mx <host>', 'the host that receives mail for the domain (default: config hostname)')
    .option('--dmarc-policy <p>', 'none, quarantine or reject (records only)', 'quarantine')
    .option('--report <address>', 'where DMARC and TLS reports go (default: postmaster@DOMAIN)');

export function registerDnsCommands(program: Command): void {
  const dns = program.command('dns').description('the DNS records a mail domain needs');
  options(dns.command('records <domain>').description('print MX, SPF, DKIM, DMARC, MTA-STS and TLS-RPT records in zone-file form')).action(
    (domain: string, opts: DnsOptions) => {
      const { list } = records(domain, opts);
      process.stdout.write(zoneFile(domain, list));
      if (!list.some((r) => r.what.startsWith('DKIM'))) {
        process.stderr.write(`\nNo DKIM key for ${domain} yet: run \`ceerion dkim keygen ${domain}\` first.\n`);
      }
    },
  );
  options(dns.command('check <domain>').description('compare published DNS with what the domain needs'))
    .option('--server <ip...>', 'ask these name servers instead of the system resolver')
    .action(async (domain: string, opts: DnsOptions) => {
      const { config, list } = records(domain, opts);
      const resolver = createResolver({ ...config.dns, ...(opts.server ? { servers: opts.server } : {}) }, { log: silentLogger });
      try {
        const rows = await checkRecords(list, resolver.resolve);
        process.stdout.write(table(['record', 'name', 'status', 'detail'], rows.map((r) => [r.what, r.name, r.status, r.detail.slice(0, 90)])) + '\n');
        process.exitCode = rows.every((r) => r.status === 'ok') ? 0 : 1;
      } finally {
        await resolver.close();
      }
    });
}
