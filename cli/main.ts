#!/usr/bin/env node
import './threadpool.js';
import { Command, CommanderError } from 'commander';
import { configureOptions } from './config.js';
import { gcCommand } from './gc.js';
import { mountCommand } from './mount.js';
import { pinCommand, unpinCommand } from './pin.js';
import { restoreCommand } from './restore.js';
import { serveCommand } from './serve.js';
import { shareCommand, sharesCommand, unshareCommand } from './share.js';
import { statusCommand } from './status.js';
import { trashCommand } from './trash.js';
import { unmountCommand } from './unmount.js';
import { upCommand } from './up.js';
import { userCommand } from './user.js';
import { versionsCommand } from './versions.js';
import { SERVER_VERSION } from '../backend/version.js';

/** `stratus` — the command line of DESIGN §9. Each failure exits non-zero with one clear line on stderr. */
const program = new Command('stratus')
  .description('Stratus: a file sync system whose client is a FUSE drive')
  .version(SERVER_VERSION)
  .showHelpAfterError('(run with --help for usage)')
  // `-V, --version` only before a command: `stratus restore PATH --version N` is restore's own.
  .enablePositionalOptions()
  .exitOverride();

program.addCommand(serveCommand());
program.addCommand(userCommand());
program.addCommand(gcCommand());
program.addCommand(mountCommand());
program.addCommand(upCommand());
program.addCommand(unmountCommand());
program.addCommand(statusCommand());
program.addCommand(pinCommand());
program.addCommand(unpinCommand());
program.addCommand(shareCommand());
program.addCommand(unshareCommand());
program.addCommand(sharesCommand());
program.addCommand(versionsCommand());
program.addCommand(restoreCommand());
program.addCommand(trashCommand());

// Last, once every command is there: each flag gets its environment variable and config-file key.
configureOptions(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  process.stderr.write(`stratus: ${(err as Error).message}\n`);
  process.exit(1);
}
