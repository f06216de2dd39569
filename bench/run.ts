/**
 * `npm run bench [-- --quick] [-- --only spawn,dns,handler,throughput,scale,mount-watch]`:
 * side-by-side benchmarks on real containers, a real broker and real kernel
 * keys; each section recorded in bench/RESULTS.md (older runs: RESULTS-archive.md). Run as root. Not part of
 * `npm test` (timing belongs here, not in tests). See bench/README-section.md.
 */
import 'reflect-metadata';
import { PACKAGE_ROOT } from '../src/common/paths.js';
import { Testbed } from '../tests/testbed/index.js';
import { dnsBench } from './dns-bench.js';
import { handlerBench } from './handler-bench.js';
import { LightContainer } from './light-container.js';
import { mountWatchBench } from './mount-watch-bench.js';
import { appendResults } from './harness.js';
import { scaleBench } from './scale-bench.js';
import { spawnBench } from './spawn-bench.js';
import { throughputBench } from './throughput-bench.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const onlyAt = argv.indexOf('--only');
const only = onlyAt >= 0 ? new Set(argv[onlyAt + 1]!.split(',')) : null;
const want = (name: string) => only === null || only.has(name);
const sizes = quick ? { warmup: 20, iterations: 200 } : { warmup: 100, iterations: 2000 };
const command = `npm run bench -- ${argv.join(' ')}`.trim();
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
      return `${sizes.iterations} iterations each, interleaved, after ${sizes.warmup} of warm-up, all started from this Node process.\n\n` +
        `A plain container (init shares the bench's cgroups, no seccomp filter):\n\n${a.text}\n\n` +
        `A container whose init has its own cgroups in every hierarchy, a seccomp filter, no_new_privs, lower rlimits, nice 3, umask 027 (what a runtime's init looks like; capturing it is what costs):\n\n${b.text}`;
    } finally {
      await Promise.all([plain.stop(), unusual.stop()]);
    }
  });
  await section('dns', 'kernel DNS upcall', () => dnsBench(sizes));
  await section('handler', 'request-key handler', () => handlerBench(sizes));
  await section('throughput', 'throughput', () => throughputBench(quick));
  await section('scale', 'scale', () => scaleBench(quick));
  await section('mount-watch', 'unmount to `unmounted`', () => mountWatchBench(quick));
} finally {
  await bed.dispose();
}
process.stdout.write(`\nbench: ${((performance.now() - started) / 1000).toFixed(0)} s${failed ? `, ${failed} section(s) failed` : ''}; recorded in bench/RESULTS.md\n`);
process.exitCode = failed ? 1 : 0;
