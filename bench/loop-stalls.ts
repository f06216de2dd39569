/**
 * A preload for the benches' broker that records why its event loop stalled:
 *   UB_BROKER_NODE_ARGS="--import $PWD/dist/bench/loop-stalls.js" UB_LOOP_STALLS_FILE=/tmp/stalls.json \
 *     npm run bench -- --quick --only throughput
 *   node dist/bench/loop-stalls-summary.js /tmp/stalls.json FROM TO   (the open-loop window the bench prints)
 *
 * A 1 ms timer notes every gap between its firings over GAP_MS, with what the
 * main thread did meanwhile according to the kernel (/proc/self/task/<tid>/schedstat:
 * time on a CPU, and time runnable but waiting for one), and perf_hooks records
 * every GC pause. Both are written as JSON when the broker exits. Wall-clock
 * times (ms since the epoch), so they can be matched with the bench's window.
 * The timer itself costs the broker ~1,000 wake-ups a second: compare runs
 * made with it, not with runs made without it.
 */
import { openSync, readSync, writeFileSync } from 'node:fs';
import { PerformanceObserver, performance } from 'node:perf_hooks';

/** A gap is noted when the 1 ms timer fired this much later than its last firing. */
const GAP_MS = 3;

export interface Stall {
  /** When the gap began (the timer's previous firing), ms since the epoch. */
  at: number;
  ms: number;
  /** Of the gap: the main thread on a CPU, and runnable but waiting for one (schedstat). */
  ranMs: number;
  waitedMs: number;
}
export interface GcPause {
  at: number;
  ms: number;
  /** perf_hooks' detail.kind: 1 minor (scavenge), 2 major (mark-compact), 4 incremental, 8 weak callbacks. */
  kind: number;
}
export interface StallRecord {
  pid: number;
  stalls: Stall[];
  gcs: GcPause[];
}

function start(file: string): void {
  const fd = openSync(`/proc/self/task/${process.pid}/schedstat`, 'r');
  const buf = Buffer.alloc(128);
  const sched = (): [number, number] => {
    const n = readSync(fd, buf, 0, buf.length, 0);
    const [run, wait] = buf.toString('latin1', 0, n).split(' ');
    return [Number(run) / 1e6, Number(wait) / 1e6];
  };
  const record: StallRecord = { pid: process.pid, stalls: [], gcs: [] };
  const epoch = performance.timeOrigin;
  let last = performance.now();
  let [ran, waited] = sched();
  setInterval(() => {
    const now = performance.now();
    const [r, w] = sched();
    if (now - last > GAP_MS) record.stalls.push({ at: epoch + last, ms: now - last, ranMs: r - ran, waitedMs: w - waited });
    last = now;
    ran = r;
    waited = w;
  }, 1).unref();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      record.gcs.push({ at: epoch + e.startTime, ms: e.duration, kind: (e as { detail?: { kind?: number } }).detail?.kind ?? 0 });
    }
  }).observe({ entryTypes: ['gc'] });
  process.on('exit', () => writeFileSync(file, JSON.stringify(record)));
}

start(process.env.UB_LOOP_STALLS_FILE ?? `/tmp/loop-stalls-${process.pid}.json`);
