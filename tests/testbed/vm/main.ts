#!/usr/bin/env node
/**
 * npm run vm -- [--kernel 6.1|6.12] [--timeout SECONDS] [--env K=V]... -- CMD [ARG]...
 *
 * Boots a namespace test VM (tests/testbed/README.md, "Namespace test VMs") and
 * runs CMD as root in this checkout's directory; exits with CMD's status.
 */
import { Command } from 'commander';
import { DEFAULT_KERNEL, KERNELS } from './kernels.js';
import { runInVm } from './vm.js';

const program = new Command('vm')
  .description('run a command as root in a QEMU guest booting a Debian kernel, with this machine\'s root shared read-only')
  .option('-k, --kernel <version>', `kernel: ${Object.keys(KERNELS).join(' or ')}`, DEFAULT_KERNEL)
  .option('-t, --timeout <seconds>', 'time bound for the whole run (exit 124 when it runs out)', '1800')
  .option('-e, --env <K=V>', 'set a variable for the command (repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
  .argument('<command...>', 'the command and its arguments (after --)')
  .action(async (argv: string[], opts: { kernel: string; timeout: string; env: string[] }) => {
    const env = Object.fromEntries(opts.env.map((kv) => {
      const i = kv.indexOf('=');
      if (i <= 0) throw new Error(`vm: --env wants K=V, got ${kv}`);
      return [kv.slice(0, i), kv.slice(i + 1)];
    }));
    const result = await runInVm({ kernel: opts.kernel, argv, env, timeoutMs: Number(opts.timeout) * 1000 });
    process.exitCode = result.status;
  });

program.parseAsync().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 125;
});
