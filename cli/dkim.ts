/**
 * `ceerion dkim`: signing keys for the milter's dkim-sign check.
 *   ceerion dkim keygen DOMAIN [--selector S] [--algo rsa|ed25519] [--keys-dir DIR] [--force]
 *   ceerion dkim show DOMAIN [--selector S] [--keys-dir DIR]
 * Defaults come from the config (milter.checks.dkimSign.selector and .keysDir). Both print the
 * DNS TXT record in zone-file form on stdout; notes go to stderr, so `> zone.txt` stays clean.
 */
import type { Command } from 'commander';
import { createPrivateKey } from 'node:crypto';
import { domainName } from '../core/config/types.ts';
import { dkimSignSchema } from '../core/config/milter-checks.ts';
import { DkimKeyError, KeyStore } from '../milter/dkim/key-store.ts';
import { DKIM_ALGORITHMS, dnsRecordValue, dnsSelector, KeyExistsError, writeNewKey, zoneFileRecord, type DkimAlgorithm } from '../milter/dkim/keys.ts';
import { loadOrExit } from './runtime.ts';

interface DkimOptions {
  config?: string;
  selector?: string;
  keysDir?: string;
}

interface KeygenOptions extends DkimOptions {
  algo: string;
  force?: boolean;
}

/** Usage errors exit 2 (as config errors do), failures 1. */
function fail(message: string, code = 1): never {
  process.stderr.write(`ceerion dkim: ${message}\n`);
  process.exit(code);
}

/** The config's dkimSign section, the domain and the keys directory (the argument or else the config's). */
function resolve(domainArg: string, opts: DkimOptions) {
  const config = loadOrExit({ ...(opts.config ? { config: opts.config } : {}) }).milter.checks.dkimSign;
  const domain = domainName.safeParse(domainArg.replace(/\.$/, ''));
  if (!domain.success) fail(`${JSON.stringify(domainArg)} is not a domain name such as example.com`, 2);
  if (opts.selector !== undefined && !dkimSignSchema.shape.selector.safeParse(opts.selector).success) {
    fail(`${JSON.stringify(opts.selector)} is not a selector (a DNS label such as s2026)`, 2);
  }
  return { domain: domain.data, keysDir: opts.keysDir ?? config.keysDir, config };
}

function withCommonOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'YAML configuration file (for dkimSign.selector and dkimSign.keysDir)')
    .option('-s, --selector <selector>', 'DKIM selector (default: dkimSign.selector from the config)')
    .option('--keys-dir <dir>', 'keys directory (default: dkimSign.keysDir from the config)');
}

export function registerDkimCommands(program: Command): void {
  const dkim = program.command('dkim').description('DKIM signing keys: generate them and print their DNS records');

  withCommonOptions(dkim.command('keygen').argument('<domain>', 'the domain to sign for (the From domain)'))
    .description('generate a signing key (mode 0600) and print its DNS TXT record')
    .option('-a, --algo <algorithm>', 'rsa (2048 bits) or ed25519', 'rsa')
    .option('-f, --force', 'replace an existing key (its old DNS record stops verifying)')
    .action((domainArg: string, opts: KeygenOptions) => {
      if (!DKIM_ALGORITHMS.includes(opts.algo as DkimAlgorithm)) fail(`--algo must be rsa or ed25519, not ${JSON.stringify(opts.algo)}`, 2);
      const algorithm = opts.algo as DkimAlgorithm;
      const { domain, keysDir, config } = resolve(domainArg, opts);
      const selector = opts.selector ?? config.selector;
      let written;
      try {
        written = writeNewKey(keysDir, domain, selector, algorithm, { force: opts.force ?? false });
      } catch (err) {
        fail(err instanceof KeyExistsError ? err.message : `cannot write the key: ${(err as Error).message}`);
      }
      const value = dnsRecordValue(createPrivateKey(written.privateKeyPem));
      process.stderr.write(`wrote ${written.path} (mode 0600). Publish this TXT record, then reload the milter:\n`);
      if (process.getuid?.() === 0) {
        process.stderr.write(`note: the key belongs to root; the milter's user must own it: chown -R USER ${keysDir}\n`);
      }
      if (selector !== config.selector || !config.algorithms.includes(algorithm)) {
        process.stderr.write(
          `note: the milter signs with selector ${config.selector} and ${config.algorithms.join('+')}; ` +
            `set dkimSign.selector / dkimSign.algorithms to use this key\n`,
        );
      }
      process.stdout.write(zoneFileRecord(domain, dnsSelector(selector, algorithm), value));
    });

  withCommonOptions(dkim.command('show').argument('<domain>', 'the domain whose records to print'))
    .description('print the DNS TXT records of the keys held for a domain (every selector unless --selector)')
    .action((domainArg: string, opts: DkimOptions) => {
      const { domain, keysDir, config } = resolve(domainArg, opts);
      let store: KeyStore;
      try {
        store = KeyStore.load({ keysDir, selector: config.selector, algorithms: config.algorithms });
      } catch (err) {
        fail(err instanceof DkimKeyError ? err.message : (err as Error).message);
      }
      const keys = store.keysOf(domain).filter((k) => !opts.selector || k.selector === opts.selector);
      if (keys.length === 0) fail(`no DKIM keys for ${domain}${opts.selector ? ` with selector ${opts.selector}` : ''} in ${keysDir}`);
      for (const key of keys) {
        process.stdout.write(`; ${key.algorithm} key ${key.path}\n` + zoneFileRecord(domain, key.dnsSelector, dnsRecordValue(key.privateKey)));
      }
    });
}
