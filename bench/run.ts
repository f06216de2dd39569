/**
 * `npm run bench [-- --quick] [-- --only spawn,dns,...]`: side-by-side
 * benchmarks on real containers; results appended to bench/RESULTS.md.
 * Run as root. Not part of `npm test` (timing belongs here, not in tests).
 */
import 'reflect-metadata';
import { PACKAGE_ROOT } from '../src/common/paths.js';
import { Testbed } from '../tests/testbed/index.js';
import { appendResults } from './harness.js';
import { spawnBench } from './spawn-bench.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const onlyAt = argv.indexOf('--only');
const only = onlyAt >= 0 ? new Set(argv[onlyAt + 1]!.split(',')) : null;
const want = (name: string) => only === null || only.has(name);
const sizes = quick ? { warmup: 20, iterations: 200 } : { warmup: 100, iterations: 2000 };
const command = `npm run bench -- ${argv.join(' ')}`.trim();

const bed = new Testbed();
try {
  if (want('spawn')) {
    const c = await bed.create({ name: 'bench-spawn' });
    const r = await spawnBench(c, sizes);
    process.stdout.write(`\nspawn (${sizes.iterations} iterations each, interleaved):\n${r.text}\n`);
    appendResults(PACKAGE_ROOT, 'spawn', command, r.text);
  }
} finally {
  await bed.dispose();
}
