/** `ceerion`: one CLI, one subcommand per service or task (the table is in commands.ts). */
import { Command } from 'commander';
import { VERSION } from '../core/version.ts';
import { registerCommands } from './commands.ts';

const program = new Command('ceerion')
  .description('CEERION mail suite: milter, policy service and LMTP indexer for Postfix + Dovecot')
  .version(VERSION);

await registerCommands(program, process.argv);
await program.parseAsync(process.argv);
