#!/usr/bin/env node
/**
 * npm run test:vm [-- --kernel 6.1 --kernel 6.12]
 *
 * The kernel matrix: on each kernel (default: all of kernels.ts), one namespace test
 * VM runs the kernel-path suites (tests/kernel-path/) and the broker's registration
 * and upcall suites, each in its own `node --test` inside the guest. Prints every
 * test's result with the kernel it ran on, a summary line per kernel and suite, and
 * exits 1 if any test failed anywhere.
 */
import { basename, join } from 'node:path';
import { Command } from 'commander';
import { PACKAGE_ROOT } from '../../../src/common/paths.js';
import { failedRun, kernelPathFiles, runInGuestRetrying } from '../../helpers/kernel-path.js';
import { leafCases } from '../../helpers/tap.js';
import { KERNELS } from './kernels.js';

/** The broker itself must work on every kernel of the matrix, not only its kernel path. */
const BROKER_SUITES = ['registration', 'upcall-exec'].map((n) => join(PACKAGE_ROOT, 'dist', 'tests', 'integration', `${n}.test.js`));

const opts = new Command('test:vm')
  .option('-k, --kernel <version>', 'a kernel of the matrix (repeatable; default all)', (v: string, all: string[]) => [...all, v], [] as string[])
  .parse()
  .opts<{ kernel: string[] }>();

async function main(): Promise<number> {
  const kernels = opts.kernel.length ? opts.kernel : Object.keys(KERNELS);
  const files = [...kernelPathFiles(), ...BROKER_SUITES];
  let failed = 0;
  const summary: string[] = [];
  for (const kernel of kernels) {
    const started = Date.now();
    const { runs, bootToCommandMs } = await runInGuestRetrying(files, kernel);
    for (const r of runs) {
      const cases = leafCases(r.tap);
      for (const c of cases) {
        const mark = c.ok ? 'ok' : 'not ok';
        process.stdout.write(`${mark} - ${basename(r.file)} › ${c.path.join(' › ')} [${r.where}]${c.directive ? ` # ${c.directive.toUpperCase()}` : ''}\n`);
        if (!c.ok && c.directive !== 'todo') process.stdout.write(`${c.diag.replace(/^/gm, '    ')}\n`);
      }
      const bad = failedRun(r);
      if (r.retried) process.stdout.write(`# ${basename(r.file)} on ${r.where}: the first attempt failed (${r.retried.join('; ')}); these results are the second's\n`);
      if (bad) failed++;
      summary.push(`# ${r.where}: ${basename(r.file)}: ${r.tap.counts.pass ?? 0} pass, ${r.tap.counts.fail ?? 0} fail, ${r.tap.counts.skipped ?? 0} skipped, exit ${r.status}`);
      if (bad) process.stdout.write(`# ${basename(r.file)} on ${r.where} exited ${r.status}:\n${r.stderr.slice(-3000).replace(/^/gm, '#   ')}\n`);
    }
    summary.push(`# kernel ${kernel}: ${((Date.now() - started) / 1000).toFixed(0)} s, first output ${bootToCommandMs ?? '-'} ms after qemu started`);
  }
  process.stdout.write(`${summary.join('\n')}\n`);
  return failed ? 1 : 0;
}

main().then((code) => (process.exitCode = code), (e: unknown) => {
  process.stderr.write(`test:vm: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
