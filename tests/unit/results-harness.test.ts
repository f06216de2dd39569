/**
 * bench/RESULTS.md as the benches write it (bench/results.ts, through
 * appendResults in bench/harness.ts): the latest run of each benchmark stays,
 * the one it replaces moves unchanged to RESULTS-archive.md, other entries and
 * hand-written text are left as they were, and the summary table lists every
 * benchmark. Each test works on a temporary package root.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { appendResults } from '../../bench/harness.js';
import { anchor, parse, recordResults } from '../../bench/results.js';

let root: string;
let bench: string;
const results = () => readFileSync(join(bench, 'RESULTS.md'), 'utf8');
const archive = () => readFileSync(join(bench, 'RESULTS-archive.md'), 'utf8');
const entries = () => parse(results()).flatMap((s) => (s.kind === 'entry' ? [s.run] : []));
const summaryRows = () => results().split('\n').filter((l) => /^\| (?!benchmark |---)/.test(l));

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'ub-results-'));
  bench = join(root, 'bench');
  mkdirSync(bench);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

test('a second run of one benchmark archives the first; another benchmark\'s entry is untouched; the summary lists both', () => {
  appendResults(root, { benchmark: 'spawn', title: 'spawn', command: 'npm run bench -- --quick', body: 'first spawn body\n\n| a | b |\n|---|---|\n| 1 | 2 |' });
  appendResults(root, { benchmark: 'soak', title: 'soak', command: 'npm run soak -- --minutes 60', body: 'soak body', summary: 'all checks pass; 60 min' });
  const soakBefore = entries().find((r) => r.benchmark === 'soak')!;
  const firstSpawn = entries().find((r) => r.benchmark === 'spawn')!;
  assert.match(firstSpawn.text, /^## spawn: \d{4}-.*Z\n\n- command: `npm run bench -- --quick`\n- machine: Linux /);

  appendResults(root, { benchmark: 'spawn', title: 'spawn', command: 'npm run bench -- --only spawn', body: 'second spawn body', summary: 'builtin 0.18x' });

  const now = entries();
  assert.deepEqual(now.map((r) => r.benchmark), ['spawn', 'soak'], 'one entry per benchmark, in their first order');
  const spawn = now[0]!;
  assert.match(spawn.text, /second spawn body/);
  assert.doesNotMatch(results(), /first spawn body/);
  assert.equal(spawn.command, 'npm run bench -- --only spawn');
  assert.deepEqual(now[1], soakBefore, 'the other benchmark\'s entry is unchanged');

  assert.match(archive(), /^# Benchmark results: archive\n/);
  assert.ok(archive().endsWith(`\n${firstSpawn.text}`), 'the first run is appended to the archive, text unchanged');
  assert.doesNotMatch(archive(), /second spawn body|soak body/);

  const rows = summaryRows();
  assert.equal(rows.length, 2);
  assert.match(rows[0]!, /^\| spawn \| \d{4}-\d\d-\d\d \d\d:\d\dZ \| `npm run bench -- --only spawn` \| builtin 0\.18x \| \[spawn: .*\]\(#spawn-\d{4}-\d\d-\d\dt\d{6}\d{3}z\) \|$/);
  assert.match(rows[1]!, /^\| soak \| .* \| `npm run soak -- --minutes 60` \| all checks pass; 60 min \| /);
  assert.ok(rows[0]!.includes(`(#${anchor(spawn.text.split('\n')[0]!.slice(3))})`), 'the link is the heading\'s anchor');
  assert.deepEqual(readdirSync(bench).sort(), ['RESULTS-archive.md', 'RESULTS.md'], 'no temporary or lock file left');
});

test('a run without a headline says "see section"; text outside the entries is kept; an old-style appended section is filed', () => {
  appendResults(root, { benchmark: 'dns', title: 'kernel DNS upcall', command: 'npm run bench -- --only dns', body: 'dns body' });
  writeFileSync(join(bench, 'RESULTS.md'), results().replace('# Benchmark results\n', '# Benchmark results\n\nA note written by hand | with a pipe.\n'));
  const stamp = new Date(Date.now() - 60_000).toISOString();
  // What the harness before this layout appended (a process still running old code).
  appendFileSync(join(bench, 'RESULTS.md'), `\n## soak: ${stamp}\n\n- command: \`npm run soak -- --minutes 60\`\n- machine: m\n\nold-style soak body\n`);

  appendResults(root, { benchmark: 'handler', title: 'request-key handler', command: 'npm run bench -- --only handler', body: 'handler body' });

  assert.match(results(), /\nA note written by hand \| with a pipe\.\n/);
  assert.deepEqual(entries().map((r) => r.benchmark), ['dns', 'soak', 'handler']);
  const soak = entries()[1]!;
  assert.equal(soak.date, stamp);
  assert.equal(soak.text, `## soak: ${stamp}\n\n- command: \`npm run soak -- --minutes 60\`\n- machine: m\n\nold-style soak body\n`);
  assert.equal(results().split(`## soak: ${stamp}`).length, 2, 'the old-style section is now only the entry');
  const rows = summaryRows();
  assert.equal(rows.length, 3);
  assert.match(rows[0]!, /^\| dns \| .* \| see section \| \[kernel DNS upcall: /);
  assert.match(rows[1]!, /^\| soak \| /);
});

test('a run older than its benchmark\'s entry goes straight to the archive; a short soak and a fast-churn soak are benchmarks of their own', () => {
  const run = (benchmark: string, date: string, body: string) => ({ benchmark, title: 'soak', date, command: 'c', text: `## soak: ${date}\n\n- command: \`c\`\n\n${body}\n` });
  recordResults(bench, [run('soak', '2026-12-04T10:00:00.000Z', 'newer')]);
  const { archived } = recordResults(bench, [run('soak', '2026-12-04T09:00:00.000Z', 'older')]);
  assert.deepEqual(archived.map((r) => r.date), ['2026-12-04T09:00:00.000Z']);
  assert.match(entries()[0]!.text, /newer/);
  assert.match(archive(), /older/);

  writeFileSync(join(bench, 'RESULTS.md'), `${results()}\n## soak: 2026-12-04T11:00:00.000Z\n\n- command: \`npm run soak -- --minutes 0.5\`\n- machine: m\n\nci soak\n`);
  recordResults(bench, []);
  assert.deepEqual(entries().map((r) => `${r.benchmark} ${r.date}`), ['soak 2026-12-04T10:00:00.000Z', 'soak-short 2026-12-04T11:00:00.000Z']);

  writeFileSync(join(bench, 'RESULTS.md'), `${results()}\n## soak: 2026-12-04T12:00:00.000Z\n\n- command: \`npm run soak -- --minutes 15 --churn-seconds 1\`\n- machine: m\n\nfast churn\n`);
  recordResults(bench, []);
  assert.deepEqual(entries().map((r) => `${r.benchmark} ${r.date}`), ['soak 2026-12-04T10:00:00.000Z', 'soak-short 2026-12-04T11:00:00.000Z', 'soak-churn 2026-12-04T12:00:00.000Z']);
});
