/** The CLI's commands (src/cli/main.ts loads this once it has set what must come before any module). */
import 'reflect-metadata';
import { Command, CommanderError } from 'commander';
import { VERSION } from '../common/paths.js';
import { addClientCommands, addResolveCommand, addStatusCommand } from './client-commands.js';
import { addDoctorCommand } from './doctor-command.js';
import { addSystemdCommand } from './systemd-command.js';
import { addConfigCommand } from './config-command.js';
import { reportError } from './output.js';
import { addServeCommand } from './serve-command.js';
import { BrokerError } from '../common/errors.js';

const program = new Command('upcall-broker')
  .description('run kernel upcalls (dns_resolver, request-key) inside the container they belong to')
  .version(VERSION, '-V, --version')
  .enablePositionalOptions()
  .exitOverride()
  .showHelpAfterError();

addServeCommand(program);
addDoctorCommand(program);
addClientCommands(program);
addResolveCommand(program);
addStatusCommand(program);
addSystemdCommand(program);
addConfigCommand(program);
(await import('./request-key-command.js')).addRequestKeyCommand(program);
(await import('./mount-command.js')).addMountCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version end here with exit code 0; usage errors with E_BAD_REQUEST's status
    if (err.exitCode === 0) process.exit(0);
    const json = process.argv.includes('--json') || process.argv.includes('-j');
    process.exitCode = reportError(json, new BrokerError('E_BAD_REQUEST', err.message.replace(/^error: /, '')));
  } else {
    process.exitCode = reportError(process.argv.includes('--json'), err);
  }
}
