/**
 * Side-by-side benchmarks: every variant of a benchmark runs in the same
 * process, interleaved (round-robin, order rotated each round) after a warm-up,
 * so machine noise hits all of them alike; we report ratios against the
 * reference variant, not absolute numbers.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { get } from 'node:http';
import { loadavg, release } from 'node:os';
import { join } from 'node:path';
import { recordResults } from './results.js';

export interface Variant {
  name: string;
  /**
   * One iteration (i < 0 during warm-up). Resolves to nothing (the harness
   * times the call) or to the duration in ms the variant measured itself
   * (e.g. inside a container, where the harness's pipe round trip is noise).
   */
  run(i: number): Promise<void | number>;
}

export interface Stats {
  name: string;
  n: number;
  median: number;
  p90: number;
  p99: number;
  mean: number;
}

export function stats(name: string, samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
  return { name, n: s.length, median: q(0.5), p90: q(0.9), p99: q(0.99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

export async function compare(variants: Variant[], opts: { warmup: number; iterations: number }): Promise<Stats[]> {
  for (let i = 0; i < opts.warmup; i++) for (const v of variants) await v.run(-1 - i);
  const samples = variants.map(() => [] as number[]);
  for (let i = 0; i < opts.iterations; i++) {
    for (let k = 0; k < variants.length; k++) {
      const j = (k + i) % variants.length;
      const t0 = performance.now();
      const own = await variants[j]!.run(i);
      samples[j]!.push(typeof own === 'number' ? own : performance.now() - t0);
    }
  }
  return variants.map((v, j) => stats(v.name, samples[j]!));
}

/** A markdown table of any rows: header cells, then one array of cells per row. */
export function markdownTable(header: readonly string[], rows: ReadonlyArray<readonly (string | number)[]>): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** utime + stime of a process, in seconds (/proc/<pid>/stat fields 14 and 15). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
}

/** All CPUs' busy time (everything but idle and iowait), in seconds, from /proc/stat. */
export function machineBusySeconds(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = cpu.reduce((a, b) => a + b, 0);
  return (total - cpu[3]! - cpu[4]!) / CLOCK_TICKS;
}

/** VmRSS of a process in MB. */
export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Open fds of a process. */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** GET /metrics of a broker serving them on a UNIX socket (`serve --metrics PATH`). */
export function scrapeMetrics(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ socketPath, path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (t: string) => (body += t)).on('end', () => resolve(body));
    }).on('error', reject);
  });
}

/** The broker's event-loop delay statistic (max, p99, p50, mean) since the previous scrape, in ms. */
export function eventLoopDelayMs(metrics: string, stat: string): number {
  const m = new RegExp(`upcall_broker_event_loop_delay_seconds\\{stat="${stat}"\\} ([0-9.e+-]+)`).exec(metrics);
  return m ? Number(m[1]) * 1000 : NaN;
}

/** The broker's garbage-collection pauses since the previous scrape, in ms: the longest ("max") or their sum ("total"). */
export function gcPauseMs(metrics: string, stat: 'max' | 'total'): number {
  const m = new RegExp(`upcall_broker_gc_pause_seconds\\{stat="${stat}"\\} ([0-9.e+-]+)`).exec(metrics);
  return m ? Number(m[1]) * 1000 : NaN;
}

/** USER_HZ; 100 on every Linux build that matters. */
const CLOCK_TICKS = 100;

export const fmt = (ms: number, digits = 3): string => (Number.isFinite(ms) ? ms.toFixed(digits) : '-');

/** A markdown table of medians/p90/p99 in ms, and each median as a ratio of the reference's. */
export function table(rows: Stats[], reference: string): string {
  const ref = rows.find((r) => r.name === reference);
  const lines = ['| variant | n | median ms | p90 ms | p99 ms | median / reference |', '|---|---|---|---|---|---|'];
  for (const r of rows) {
    const ratio = ref ? (r.median / ref.median).toFixed(2) : '-';
    lines.push(`| ${r.name} | ${r.n} | ${r.median.toFixed(3)} | ${r.p90.toFixed(3)} | ${r.p99.toFixed(3)} | ${r.name === reference ? '1.00 (reference)' : ratio} |`);
  }
  return lines.join('\n');
}

export function machine(): string {
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
  const cores = readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter((l) => l.startsWith('processor')).length;
  return `Linux ${release()}, ${cpu} (${cores} cores), Node ${process.version}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} (the machine is shared: compare ratios from one run)`;
}

export interface BenchResult {
  /** Stable key: runs with the same key replace each other in RESULTS.md (e.g. `spawn`, `soak`, `vm-boot-6.12`). */
  benchmark: string;
  /** The section's heading (its time is added). */
  title: string;
  command: string;
  body: string;
  /** One line of headline figures for the summary table; without it the table says "see section". */
  summary?: string;
}

/** Records a run as the latest of its benchmark in bench/RESULTS.md; the previous one moves to bench/RESULTS-archive.md (bench/results.ts). */
export function appendResults(root: string, r: BenchResult): void {
  const date = new Date().toISOString();
  const text = `## ${r.title}: ${date}\n\n- command: \`${r.command}\`\n- machine: ${machine()}\n\n${r.body}\n`;
  recordResults(join(root, 'bench'), [{ benchmark: r.benchmark, title: r.title, date, command: r.command, summary: r.summary, text }]);
}
