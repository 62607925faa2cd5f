// Preloaded (node --import) before bin/ceerion.mjs by commands.test.ts: instead of parsing argv,
// the CLI prints its whole command tree (names, long options, subcommands) as JSON and exits, so
// one process answers what `--help` of every subcommand would.
import { Command } from 'commander';

const tree = (cmd) => ({
  name: cmd.name(),
  options: cmd.options.map((o) => o.long).filter(Boolean),
  commands: cmd.commands.map(tree),
});

Command.prototype.parseAsync = async function dumpTree() {
  process.stdout.write(JSON.stringify(tree(this)));
  process.exit(0);
};
