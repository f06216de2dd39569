import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { PACKAGE_ROOT } from '../common/paths.js';
import { printResult, reportError } from './output.js';

const UNITS = ['upcall-broker.service', 'upcall-broker.socket'] as const;

/** The unit files of examples/systemd with this installation's node and CLI paths filled in. */
export function renderUnits(node = process.execPath, cli = join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js')): Record<string, string> {
  return Object.fromEntries(UNITS.map((name) => [name,
    readFileSync(join(PACKAGE_ROOT, 'examples', 'systemd', name), 'utf8').replaceAll('@NODE@', node).replaceAll('@CLI@', cli)]));
}

export function addSystemdCommand(program: Command): void {
  const systemd = program.command('systemd').description('install the systemd units (socket activation, Type=notify)');
  systemd.command('install')
    .description('write upcall-broker.service and upcall-broker.socket (then: systemctl daemon-reload; systemctl enable --now upcall-broker.socket)')
    .option('-d, --dir <dir>', 'unit directory', '/etc/systemd/system')
    .option('-n, --dry-run', 'print the units instead of writing them')
    .option('-j, --json', 'print JSON')
    .action((opts: { dir: string; dryRun?: boolean; json?: boolean }) => {
      try {
        const units = renderUnits();
        if (opts.dryRun) {
          printResult(opts.json === true, units, () => Object.entries(units).map(([n, t]) => `# ${n}\n${t}`).join('\n'));
          return;
        }
        mkdirSync(opts.dir, { recursive: true });
        for (const [name, text] of Object.entries(units)) {
          const tmp = join(opts.dir, `.${name}.tmp`);
          writeFileSync(tmp, text, { mode: 0o644 });
          renameSync(tmp, join(opts.dir, name));
        }
        printResult(opts.json === true, { dir: opts.dir, units: Object.keys(units) }, () => `wrote ${UNITS.join(', ')} to ${opts.dir}`);
      } catch (err) {
        process.exitCode = reportError(opts.json === true, err);
      }
    });
}
