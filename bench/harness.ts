/**
 * Side-by-side benchmarks: every variant of a benchmark runs in the same
 * process, interleaved (round-robin, order rotated each round) after a warm-up,
 * so machine noise hits all of them alike; we report ratios against the
 * reference variant, not absolute numbers.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';

export interface Variant {
  name: string;
  run(i: number): Promise<void>;
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
      await variants[j]!.run(i);
      samples[j]!.push(performance.now() - t0);
    }
  }
  return variants.map((v, j) => stats(v.name, samples[j]!));
}

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
  return `Linux ${release()}, ${cpu} (${cores} cores), Node ${process.version}`;
}

export function appendResults(root: string, title: string, command: string, body: string): void {
  const path = join(root, 'bench', 'RESULTS.md');
  const head = existsSync(path) ? '' : '# Benchmark results\n\nAppended by `npm run bench`; each section says how it was run. Compare ratios, not absolute times.\n';
  appendFileSync(path, `${head}\n## ${title}: ${new Date().toISOString()}\n\n- command: \`${command}\`\n- machine: ${machine()}\n\n${body}\n`);
}
