/**
 * `ceerion setup` (pnpm mail:setup): provision this host's Postfix + Dovecot for the suite.
 *   ceerion setup [--dry-run] [--config FILE] [--postfix-dir /etc/postfix] [--dovecot-dir /etc/dovecot]
 *                 [--no-install] [--mail-user vmail] [--mail-home /var/vmail/%Ld/%Ln]
 *                 [--default-quota 1G] [--service-user root]
 * Installs the Debian packages (root + apt, unless --no-install), then writes Postfix's main.cf /
 * master.cf (through postconf) and Dovecot's conf.d snippets from the shipped files, filled from
 * the suite's config. --dry-run prints the diff of every file and changes nothing. Running it
 * again changes nothing. Exit codes: 0 done (or nothing to do), 1 failure, 2 usage/config error.
 */
import type { Command } from 'commander';
import { InvalidQuotaError, quotaRuleFor } from '../accounts/quota.ts';
import { PostfixMapsError } from '../accounts/postfix-maps.ts';
import { renderReport } from '../stack/setup/files.ts';
import { DEFAULT_SETUP_OPTIONS, runSetup } from '../stack/setup/setup.ts';
import { loadOrExit } from './runtime.ts';

interface SetupCliOptions {
  dryRun?: boolean;
  config?: string;
  postfixDir: string;
  dovecotDir: string;
  install: boolean;
  mailUser: string;
  mailHome: string;
  defaultQuota: string;
  serviceUser: string;
}

export function registerSetupCommand(program: Command): void {
  const d = DEFAULT_SETUP_OPTIONS;
  program
    .command('setup')
    .description('wire this host\'s Postfix + Dovecot to the suite: packages, main.cf/master.cf (postconf), Dovecot conf.d snippets')
    .option('--dry-run', 'print the packages and a unified diff of every file it would change; change nothing')
    .option('-c, --config <file>', 'YAML configuration file (CEERION_* environment variables override it)')
    .option('--postfix-dir <dir>', "Postfix's configuration directory", d.postfixDir)
    .option('--dovecot-dir <dir>', "Dovecot's configuration directory", d.dovecotDir)
    .option('--no-install', 'do not install Debian packages')
    .option('--mail-user <user>', 'system user owning the mailboxes (created when missing)', d.mailUser)
    .option('--mail-home <template>', "each account's home, with Dovecot variables", d.mailHome)
    .option('--default-quota <size>', 'quota of accounts without their own, e.g. 500M, 2G; none for no limit', '1G')
    .option('--service-user <user>', "the user the suite's services run as (may use Dovecot's LMTP socket)", d.serviceUser)
    .action(async (opts: SetupCliOptions) => {
      const config = loadOrExit(opts.config ? { config: opts.config } : {});
      let defaultQuotaRule: string;
      try {
        // `none`: no limit, which Dovecot spells as a zero size.
        defaultQuotaRule = quotaRuleFor(opts.defaultQuota) ?? '*:storage=0';
      } catch (err) {
        if (!(err instanceof InvalidQuotaError)) throw err;
        process.stderr.write(`ceerion setup: --default-quota: ${err.message}\n`);
        process.exitCode = 2;
        return;
      }
      try {
        const report = await runSetup(config, {
          dryRun: opts.dryRun === true,
          install: opts.install,
          postfixDir: opts.postfixDir,
          dovecotDir: opts.dovecotDir,
          mailUser: opts.mailUser,
          mailHome: opts.mailHome,
          defaultQuotaRule,
          serviceUser: opts.serviceUser,
        });
        process.stdout.write(renderReport(report));
      } catch (err) {
        process.stderr.write(`ceerion setup: ${(err as Error).message}\n`);
        process.exitCode = err instanceof PostfixMapsError ? 2 : 1;
      }
    });
}
