import type { Command } from 'commander';
import { loadConfig } from './config-loader.js';
import { printResult, reportError } from './output.js';

export function addConfigCommand(program: Command): void {
  const config = program.command('config').description('check or show the broker configuration (JSON, default /etc/upcall-broker/config.json)');
  config.command('check <file>')
    .description('validate a configuration file; a bad one is named by field, exit status 12')
    .option('-j, --json', 'print JSON')
    .action((file: string, opts: { json?: boolean }) => {
      try {
        loadConfig(file);
        printResult(opts.json === true, { file, ok: true }, () => `${file}: ok`);
      } catch (err) {
        process.exitCode = reportError(opts.json === true, err);
      }
    });
  config.command('show')
    .description('the effective configuration: the embedded defaults overlaid with FILE')
    .option('-c, --config <file>', 'configuration file (default: none, the embedded defaults)')
    .option('-j, --json', 'print JSON (the default: the configuration is JSON)')
    .action((opts: { config?: string; json?: boolean }) => {
      try {
        const effective = loadConfig(opts.config);
        process.stdout.write(`${JSON.stringify(effective, null, 2)}\n`);
      } catch (err) {
        process.exitCode = reportError(opts.json === true, err);
      }
    });
}
