import type { Command } from 'commander';
import { Doctor, PROBE_TIMEOUT_MS } from '../broker/doctor.js';
import { BrokerError } from '../common/errors.js';
import { defaultConfig } from '../common/defaults.js';
import { createContainer } from '../container.js';
import { NullLoggerFactory } from '../logging/winston-logger-factory.js';
import { printResult, table } from './output.js';

export function addDoctorCommand(program: Command): void {
  program.command('doctor')
    .description('probe each kernel feature the broker relies on and say what is missing')
    .option('-j, --json', 'print one JSON object: { ok, degraded, features: [{ name, ok, status, detail, impact }] }')
    .option('-t, --timeout-ms <ms>', `bound on each probe (default ${PROBE_TIMEOUT_MS})`, (v) => parsePositive(v), PROBE_TIMEOUT_MS)
    .action(async (opts: { json?: boolean; timeoutMs: number }) => {
      const doctor = createContainer(defaultConfig(), new NullLoggerFactory()).get(Doctor);
      const features = await doctor.run(opts.timeoutMs);
      const ok = features.every((f) => f.ok);
      const degraded = features.filter((f) => f.status === 'degraded').map((f) => f.name);
      printResult(opts.json === true, { ok, degraded, features }, () => table(
        ['FEATURE', 'STATUS', 'DETAIL'],
        features.map((f) => [f.name, f.status === 'ok' ? 'ok' : f.status.toUpperCase(), f.status === 'ok' ? f.detail : `${f.detail}; ${f.impact ?? ''}`]),
      ));
      // A probe abandoned at its deadline may leave a handle (a socket, a timer) behind:
      // exit now rather than wait for it. stdout is a file or pipe, written synchronously.
      process.exit(ok ? 0 : 10);
    });
}

function parsePositive(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new BrokerError('E_BAD_REQUEST', `--timeout-ms: not a positive integer: ${v}`);
  return n;
}
