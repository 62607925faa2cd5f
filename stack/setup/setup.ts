/**
 * `ceerion setup` (pnpm mail:setup): wires an existing system Postfix + Dovecot to the suite.
 * gather → plan (pure) → stage main.cf/master.cf with the real postconf → diff → apply.
 * With dryRun nothing on the host changes: the report shows the diff of every file and the
 * packages and commands it would install and run.
 */
import path from 'node:path';
import type { Config } from '../../core/config/schema.ts';
import { cannotInstall, compileSieve, createMailUser, ensureDirs, installPackages, writeChanges } from './apply.ts';
import { fileChanges, type DesiredFile, type Report } from './files.ts';
import { dovecotCurrentPaths, readCurrent, readFacts, readTemplates } from './gather.ts';
import { mailRoot, planSetup, wantedPackages, type SetupOptions } from './plan.ts';
import { stagePostfix } from './stage.ts';

export interface RunSetupOptions extends SetupOptions {
  dryRun: boolean;
  /** false: never install packages (--no-install). */
  install: boolean;
}

export const DEFAULT_SETUP_OPTIONS: SetupOptions = {
  postfixDir: '/etc/postfix',
  dovecotDir: '/etc/dovecot',
  mailUser: 'vmail',
  mailHome: '/var/vmail/%Ld/%Ln',
  defaultQuotaRule: '*:storage=1G',
  serviceUser: 'root',
};

export async function runSetup(config: Config, opts: RunSetupOptions): Promise<Report> {
  const templates = await readTemplates(config);
  const packages = wantedPackages(config);
  let facts = await readFacts(opts, packages);
  const commands: string[] = [];
  const missing = packages.filter((p) => !facts.installedPackages.has(p));
  const skipped = missing.length === 0 ? undefined : !opts.install ? '--no-install' : await cannotInstall();
  if (missing.length && !skipped && !opts.dryRun) {
    commands.push(...(await installPackages(missing, config.hostname)));
    // Installing Postfix or Dovecot creates the files the plan starts from.
    facts = await readFacts(opts, packages);
  }

  const plan = planSetup(config, opts, templates, facts, await readCurrent(dovecotCurrentPaths(opts.dovecotDir)));
  const staged = await stagePostfix(opts.postfixDir, facts.mainCf, facts.masterCf, plan.main, plan.master);
  const desired: DesiredFile[] = [...plan.files];
  if (plan.main.length || !facts.mainCfExists) desired.unshift({ path: path.join(opts.postfixDir, 'main.cf'), text: staged.mainCf, mode: 0o644, keepMode: true });
  if (plan.master.length) desired.splice(desired[0]?.path.endsWith('/main.cf') ? 1 : 0, 0, { path: path.join(opts.postfixDir, 'master.cf'), text: staged.masterCf, mode: 0o644, keepMode: true });
  const changes = fileChanges(desired, await readCurrent(desired.map((f) => f.path)));
  const notes = [...plan.notes];

  if (plan.createMailUser) {
    if (opts.dryRun) commands.push(`useradd --system --user-group --home-dir ${mailRoot(opts.mailHome)} ${plan.createMailUser}`);
    else commands.push(await createMailUser(plan.createMailUser, mailRoot(opts.mailHome)));
  }
  commands.push(...(await ensureDirs(plan.dirs, opts.dryRun)));
  if (!opts.dryRun) commands.push(...(await writeChanges(changes)));
  const sieveDir = path.join(opts.dovecotDir, 'ceerion', 'sieve');
  commands.push(...(await compileSieve(sieveDir, path.join(opts.dovecotDir, 'dovecot.conf'), changes, opts.dryRun)));

  if (!opts.dryRun && changes.length) notes.push('reload the daemons to use the changes: postfix reload; doveadm reload');
  return {
    dryRun: opts.dryRun,
    packages: { missing: opts.dryRun || skipped ? missing : [], ...(skipped ? { skipped } : {}) },
    changes,
    postconf: staged.commands,
    commands,
    notes,
  };
}
