import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StallRecord } from '../../bench/loop-stalls.js';
import { summarizeStalls } from '../../bench/loop-stalls-summary.js';

const T = Date.parse('2026-12-05T05:00:00.000Z');
const rec: StallRecord = {
  pid: 1,
  stalls: [
    { at: T, ms: 8, ranMs: 2, waitedMs: 6 }, // a wait for a CPU
    { at: T + 100, ms: 10, ranMs: 9, waitedMs: 0 }, // a GC pause of 7 ms, 1 ms of it outside the stall
    { at: T + 200, ms: 4, ranMs: 4, waitedMs: 0 }, // under the threshold
    { at: T + 5000, ms: 20, ranMs: 20, waitedMs: 0 }, // outside the window
  ],
  gcs: [{ at: T + 104, ms: 7, kind: 2 }, { at: T + 5001, ms: 3, kind: 1 }],
};

test('stalls in the window over the threshold, with their CPU wait and the GC inside them', () => {
  const out = summarizeStalls(rec, T, T + 1000, 5).split('\n');
  assert.equal(out[0], 'stalls over 5 ms: 2');
  assert.match(out[1]!, /8\.0 ms: ran 2\.0, waited for a CPU 6\.0, neither 0\.0; no GC$/);
  assert.match(out[2]!, /10\.0 ms: ran 9\.0, waited for a CPU 0\.0, neither 1\.0; mark-compact 7\.0 ms$/);
  // 18 ms in all: ran 11 (61 %), GC 6 of it (33 %: only the part inside the stall), waited 6 (33 %), neither 1 (6 %).
  assert.equal(out[3], 'of their 18.0 ms: ran 61 % (GC pauses 33 %), waited for a CPU 33 %, neither 6 %');
});

test('no window, a lower threshold: every stall counts; none at all says so', () => {
  assert.match(summarizeStalls(rec, -Infinity, Infinity, 3), /^stalls over 3 ms: 4\n/);
  assert.equal(summarizeStalls({ pid: 1, stalls: [], gcs: [] }), 'stalls over 5 ms: 0');
});
