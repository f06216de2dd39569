/**
 * The targets table of `npm run bench` (bench/targets.ts): each of the five figures is met or missed by
 * how much, a run missing one is not complete (and so not recorded), the README block between its markers
 * is replaced and nothing else, and a README without the markers is refused rather than appended to.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { complete, headline, README_CLOSE, README_OPEN, readmeBlock, replaceReadmeBlock, TARGETS, targetsTable, verdict, writeReadme, type Figures } from '../../bench/targets.js';

const all: Figures = {
  spawn: { value: 0.18, detail: 'plain 0.17x' },
  dns: { value: 1.1 },
  handler: { value: 1.5 },
  loop: { value: 4.2 },
  rss: { value: 130 },
};
const target = (key: string) => TARGETS.find((t) => t.key === key)!;

test('a figure at or under its target is met; over it, missed by the excess and its share of the target', () => {
  assert.equal(verdict(target('dns'), 1.2), 'met');
  assert.equal(verdict(target('spawn'), 0.18), 'missed by 0.03 (20 %)');
  assert.equal(verdict(target('rss'), 130), 'missed by 30 MB (30 %)');
  assert.equal(verdict(target('loop'), 6.6), 'missed by 1.6 ms (32 %)');
  assert.equal(verdict(target('loop'), NaN), 'not measured');
});

test('the table has the five rows in order, with measured value, target and verdict', () => {
  const lines = targetsTable(all).split('\n');
  assert.equal(lines.length, 2 + TARGETS.length);
  assert.match(lines[2]!, /^\| builtin spawn .* \| \*\*0\.18x\*\* \(plain 0\.17x\) \| ≤ 0\.15x \| missed by 0\.03 \(20 %\) \|$/);
  assert.match(lines[3]!, /\| \*\*1\.10x\*\* \| ≤ 1\.20x \| met \|$/);
  assert.match(lines[5]!, /\| \*\*4\.2 ms\*\* \| ≤ 5\.0 ms \| met \|$/);
  assert.match(lines[6]!, /\| \*\*130 MB\*\* \| ≤ 100 MB \| missed by 30 MB \(30 %\) \|$/);
  assert.equal(headline(all), '2 of 5 targets met; missed: spawn 0.18x, handler 1.50x, rss 130 MB');
});

test('a run without all five figures is not complete, and shows the missing one as not measured', () => {
  const { rss: _rss, ...four } = all;
  assert.equal(complete(all), true);
  assert.equal(complete(four), false);
  assert.match(targetsTable(four).split('\n')[6]!, /\| - \| ≤ 100 MB \| not measured \|$/);
});

test('the README block between the markers is replaced, the text around it kept; no markers: refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ub-targets-'));
  try {
    const readme = join(dir, 'README.md');
    const before = `# x\n\nintro\n\n${README_OPEN}\nold table\n${README_CLOSE}\n\nafter\n`;
    writeFileSync(readme, before);
    const block = readmeBlock(all, { command: 'npm run bench', date: '2026-12-04T22:40:01.000Z', machine: 'test machine' });
    writeReadme(readme, block);
    const once = readFileSync(readme, 'utf8');
    assert.ok(once.startsWith('# x\n\nintro\n\n'));
    assert.ok(once.endsWith(`${README_CLOSE}\n\nafter\n`));
    assert.ok(!once.includes('old table'));
    assert.match(once, /Latest `npm run bench`, 2026-12-04 22:40 UTC; test machine\./);
    writeReadme(readme, block);
    assert.equal(readFileSync(readme, 'utf8'), once, 'idempotent');
    assert.throws(() => replaceReadmeBlock('# no markers\n', block), /no bench:targets markers/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
