// `ceerion setup` as the CLI runs it, without cli/main.ts (the lead registers the command there):
//   node --import tsx test/stack/setup/run-setup.ts setup [options]
import { Command } from 'commander';
import { registerSetupCommand } from '../../../cli/setup.ts';

const program = new Command('ceerion');
registerSetupCommand(program);
await program.parseAsync(process.argv);
