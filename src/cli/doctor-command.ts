import type { Command } from 'commander';
import { Doctor } from '../broker/doctor.js';
import { defaultConfig } from '../common/defaults.js';
import { createContainer } from '../container.js';
import { NullLoggerFactory } from '../logging/winston-logger-factory.js';
import { printResult, table } from './output.js';

export function addDoctorCommand(program: Command): void {
  program.command('doctor')
    .description('probe each kernel feature the broker relies on and say what is missing')
    .option('-j, --json', 'print one JSON object: { features: [{ name, ok, detail }] }')
    .action(async (opts: { json?: boolean }) => {
      const doctor = createContainer(defaultConfig(), new NullLoggerFactory()).get(Doctor);
      const features = await doctor.run();
      const ok = features.every((f) => f.ok);
      printResult(opts.json === true, { ok, features }, () => table(
        ['FEATURE', 'STATUS', 'DETAIL'],
        features.map((f) => [f.name, f.ok ? 'ok' : 'MISSING', f.ok ? f.detail : `${f.detail}; ${f.impact ?? ''}`]),
      ));
      process.exitCode = ok ? 0 : 10;
    });
}
