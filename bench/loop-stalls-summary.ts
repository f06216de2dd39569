/**
 * `node dist/bench/loop-stalls-summary.js FILE [FROM TO] [MIN_MS]`: the broker's event-loop stalls recorded
 * by bench/loop-stalls.ts, within [FROM, TO] (ISO times, e.g. the throughput bench's open-loop window) and
 * longer than MIN_MS (default 5): for each, how much of it the main thread ran, how much it waited for a CPU
 * (runnable, not running: the machine's cores were busy), and the GC pauses inside it; then the totals.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { StallRecord } from './loop-stalls.js';

const KINDS: Record<number, string> = { 1: 'scavenge', 2: 'mark-compact', 4: 'incremental marking', 8: 'weak callbacks' };

export function summarizeStalls(rec: StallRecord, from = -Infinity, to = Infinity, minMs = 5): string {
  const stalls = rec.stalls.filter((s) => s.at >= from && s.at + s.ms <= to && s.ms > minMs);
  const lines = [`stalls over ${minMs} ms: ${stalls.length}`];
  let ran = 0, waited = 0, gc = 0, total = 0;
  for (const s of stalls) {
    const gcs = rec.gcs.filter((g) => g.at < s.at + s.ms && g.at + g.ms > s.at);
    const gcMs = gcs.reduce((n, g) => n + Math.min(g.at + g.ms, s.at + s.ms) - Math.max(g.at, s.at), 0);
    ran += s.ranMs; waited += s.waitedMs; gc += gcMs; total += s.ms;
    const what = gcs.map((g) => `${KINDS[g.kind] ?? `kind ${g.kind}`} ${g.ms.toFixed(1)} ms`).join(', ') || 'no GC';
    lines.push(`- ${new Date(s.at).toISOString()} ${s.ms.toFixed(1)} ms: ran ${s.ranMs.toFixed(1)}, waited for a CPU ${s.waitedMs.toFixed(1)}, neither ${Math.max(0, s.ms - s.ranMs - s.waitedMs).toFixed(1)}; ${what}`);
  }
  if (total > 0) {
    const pct = (x: number) => `${((x / total) * 100).toFixed(0)} %`;
    lines.push(`of their ${total.toFixed(1)} ms: ran ${pct(ran)} (GC pauses ${pct(gc)}), waited for a CPU ${pct(waited)}, neither ${pct(Math.max(0, total - ran - waited))}`);
  }
  return lines.join('\n');
}

if (process.argv[1] && basename(process.argv[1]) === 'loop-stalls-summary.js') {
  const [file, from, to, min] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: node dist/bench/loop-stalls-summary.js FILE [FROM TO] [MIN_MS]\n');
    process.exit(2);
  }
  const rec = JSON.parse(readFileSync(file, 'utf8')) as StallRecord;
  process.stdout.write(`${summarizeStalls(rec, from ? Date.parse(from) : -Infinity, to ? Date.parse(to) : Infinity, min ? Number(min) : 5)}\n`);
}
