/**
 * `node dist/bench/results-archive.js [--dir DIR]`: files every section of
 * DIR/RESULTS.md (default: this package's bench/) written in the older
 * appended format (`## <title>: <ISO time>`, then `- command:`): the newest
 * run of each benchmark becomes its entry, the others move, text unchanged,
 * to the end of RESULTS-archive.md; the summary table is rewritten. Safe to
 * run again: with nothing to file it only rewrites the summary.
 */
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../src/common/paths.js';
import { recordResults } from './results.js';

const argv = process.argv.slice(2);
if (argv.includes('--help')) {
  process.stdout.write('usage: node dist/bench/results-archive.js [--dir DIR]\nFiles old-style sections of DIR/RESULTS.md (default bench/) into the per-benchmark layout; older runs go to RESULTS-archive.md.\n');
  process.exit(0);
}
const at = argv.indexOf('--dir');
const dir = at >= 0 ? argv[at + 1]! : join(PACKAGE_ROOT, 'bench');
const { archived } = recordResults(dir, []);
process.stdout.write(`${join(dir, 'RESULTS.md')}: ${archived.length} older run(s) moved to RESULTS-archive.md${archived.map((r) => `\n  ${r.benchmark}: ${r.date}`).join('')}\n`);
