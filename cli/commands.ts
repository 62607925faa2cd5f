/**
 * Which module registers each top-level command. `ceerion milter` (and every other command) loads
 * only the module that defines it: importing all of them costs ~1.7 s of tsx compile and module
 * evaluation per process, and `pnpm mail:start` starts four service processes at once on a
 * small machine. `--help`, a bare `ceerion` or an unknown command load them all, so help and
 * commander's "unknown command" suggestions stay complete. test/cli/commands.test.ts checks this
 * table against what each module really registers.
 */
import type { Command } from 'commander';

type Register = (program: Command) => void;

export interface CommandModule {
  /** The top-level commands the module registers, in its registration order. */
  commands: readonly string[];
  load(): Promise<Register>;
}

export const COMMAND_MODULES: readonly CommandModule[] = [
  { commands: ['milter', 'policyd', 'lmtp', 'postfix-config'], load: async () => (await import('./services.ts')).registerServiceCommands },
  { commands: ['dkim'], load: async () => (await import('./dkim.ts')).registerDkimCommands },
  { commands: ['dns'], load: async () => (await import('./dns.ts')).registerDnsCommands },
  { commands: ['policy'], load: async () => (await import('./policy.ts')).registerPolicyCommands },
  { commands: ['learn', 'train', 'classify', 'eval'], load: async () => (await import('./classifier.ts')).registerClassifierCommands },
  { commands: ['model'], load: async () => (await import('./model.ts')).registerModelCommands },
  { commands: ['search', 'token'], load: async () => (await import('./search.ts')).registerSearchCommands },
  { commands: ['learner'], load: async () => (await import('./learner.ts')).registerLearnerCommands },
  { commands: ['account'], load: async () => (await import('./account.ts')).registerAccountCommands },
  { commands: ['backup'], load: async () => (await import('./backup.ts')).registerBackupCommands },
  { commands: ['start', 'stop', 'status'], load: async () => (await import('./stack.ts')).registerStackCommands },
  { commands: ['smoke'], load: async () => (await import('./smoke.ts')).registerSmokeCommand },
  { commands: ['logs'], load: async () => (await import('./logs.ts')).registerLogsCommand },
  { commands: ['setup'], load: async () => (await import('./setup.ts')).registerSetupCommand },
  { commands: ['postfix-queue-metrics'], load: async () => (await import('./postfix-queue.ts')).registerPostfixQueueCommand },
  { commands: ['mta-sts'], load: async () => (await import('./mta-sts.ts')).registerMtaStsCommands },
];

/** The modules to load for this command line: the one defining its command, else all of them. */
export function modulesFor(argv: readonly string[]): readonly CommandModule[] {
  // argv[2] is the command unless it is an option (`--help`, `--version`), which needs them all.
  const name = argv[2];
  const own = name && !name.startsWith('-') ? COMMAND_MODULES.find((m) => m.commands.includes(name)) : undefined;
  return own ? [own] : COMMAND_MODULES;
}

/** Register the commands this command line needs on `program`. */
export async function registerCommands(program: Command, argv: readonly string[]): Promise<void> {
  const registers = await Promise.all(modulesFor(argv).map((m) => m.load()));
  for (const register of registers) register(program);
}
