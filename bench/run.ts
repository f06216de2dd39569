/**
 * `npm run bench [-- --quick] [-- --only spawn,dns,handler,throughput,scale,mount-watch]`:
 * side-by-side benchmarks on real containers, a real broker and real kernel
 * keys; each section recorded in bench/RESULTS.md (older runs: RESULTS-archive.md). Run as root. Not part of
 * `npm test` (timing belongs here, not in tests). See bench/README-section.md.
 */
import { join } from 'node:path';
import 'reflect-metadata';
import { PACKAGE_ROOT } from '../src/common/paths.js';
import { Testbed } from '../tests/testbed/index.js';
import { dnsBench } from './dns-bench.js';
import { handlerBench } from './handler-bench.js';
import { LightContainer } from './light-container.js';
import { mountWatchBench } from './mount-watch-bench.js';
import { appendResults, machine, type Stats } from './harness.js';
import { scaleBench } from './scale-bench.js';
import { BUILTIN_CACHED, NSENTER, spawnBench } from './spawn-bench.js';
import { complete, headline, readmeBlock, targetsTable, TARGETS, writeReadme, type Figures } from './targets.js';
import { throughputBench } from './throughput-bench.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const onlyAt = argv.indexOf('--only');
const only = onlyAt >= 0 ? new Set(argv[onlyAt + 1]!.split(',')) : null;
const want = (name: string) => only === null || only.has(name);
const sizes = quick ? { warmup: 20, iterations: 200 } : { warmup: 100, iterations: 2000 };
/** The five targets' figures, filled in by the sections (bench/targets.ts). */
const figures: Figures = {};
const ratio = (rows: Stats[], name: string, reference: string) =>
  rows.find((r) => r.name === name)!.median / rows.find((r) => r.name === reference)!.median;
const command = argv.length ? `npm run bench -- ${argv.join(' ')}` : 'npm run bench';
const started = performance.now();
let failed = 0;

async function section(name: string, title: string, body: () => Promise<string>): Promise<void> {
  if (!want(name)) return;
  const t0 = performance.now();
  process.stdout.write(`\n== ${title} ...\n`);
  try {
    const text = `${await body()}\n\n(${((performance.now() - t0) / 1000).toFixed(0)} s)`;
    process.stdout.write(`${text}\n`);
    appendResults(PACKAGE_ROOT, { benchmark: name, title, command, body: text });
  } catch (err) {
    failed++;
    const text = `**failed**: ${(err as Error).stack ?? String(err)}`;
    process.stdout.write(`${text}\n`);
    appendResults(PACKAGE_ROOT, { benchmark: name, title, command, body: text });
  }
}

const bed = new Testbed();
try {
  await section('spawn', 'spawn', async () => {
    const plain = await LightContainer.start({ name: 'bench-spawn' });
    const unusual = await LightContainer.start({ name: 'bench-spawn-u', unusual: true });
    try {
      const a = await spawnBench(plain, sizes);
      const b = await spawnBench(unusual, sizes);
      const [pa, pb] = [a, b].map((x) => ratio(x.rows, BUILTIN_CACHED, NSENTER));
      figures.spawn = { value: Math.max(pa!, pb!), detail: `plain init ${pa!.toFixed(2)}x, runtime-like init ${pb!.toFixed(2)}x; the larger counts` };
      return `${sizes.iterations} iterations each, interleaved, after ${sizes.warmup} of warm-up, all started from this Node process.\n\n` +
        `A plain container (init shares the bench's cgroups, no seccomp filter):\n\n${a.text}\n\n` +
        `A container whose init has its own cgroups in every hierarchy, a seccomp filter, no_new_privs, lower rlimits, nice 3, umask 027 (what a runtime's init looks like; capturing it is what costs):\n\n${b.text}`;
    } finally {
      await Promise.all([plain.stop(), unusual.stop()]);
    }
  });
  await section('dns', 'kernel DNS upcall', () => dnsBench(sizes, figures));
  await section('handler', 'request-key handler', () => handlerBench(sizes, figures));
  await section('throughput', 'throughput', () => throughputBench(quick, figures));
  await section('scale', 'scale', () => scaleBench(figures));
  await section('mount-watch', 'unmount to `unmounted`', () => mountWatchBench(quick));
} finally {
  await bed.dispose();
}
if (TARGETS.some((t) => want(t.section))) {
  const table = targetsTable(figures);
  process.stdout.write(`\n== targets\n${table}\n`);
  // Only a run that measured all five side by side replaces the recorded table and the README's.
  if (complete(figures)) {
    const date = new Date().toISOString();
    appendResults(PACKAGE_ROOT, {
      benchmark: 'targets', title: 'targets', command, summary: headline(figures),
      body: `The five figures of issue 17, all from this one run (each section's full table below).\n\n${table}`,
    });
    writeReadme(join(PACKAGE_ROOT, 'README.md'), readmeBlock(figures, { command, date, machine: machine() }));
  }
}
process.stdout.write(`\nbench: ${((performance.now() - started) / 1000).toFixed(0)} s${failed ? `, ${failed} section(s) failed` : ''}; recorded in bench/RESULTS.md\n`);
process.exitCode = failed ? 1 : 0;
