/**
 * `node dist/bench/cpu-profile-summary.js FILE.cpuprofile [TOP [FUNCTION...]]`: the functions with the most self time in a
 * V8 CPU profile (`--cpu-prof`, e.g. the benches' broker under `UB_BROKER_NODE_ARGS='--cpu-prof
 * --cpu-prof-dir=DIR'`), as text small enough to keep in bench/profiles/ (a .cpuprofile is megabytes), and
 * the longest runs of samples without an idle one; and for each FUNCTION named, the time in samples with it
 * on the stack (its inclusive time).
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const IDLE = new Set(['(idle)', '(program)']);

export function summarize(p: Profile, top = 25, inclusive: readonly string[] = []): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const within = new Map(inclusive.map((f) => [f, 0]));
  const below = new Map(inclusive.map((f) => [f, new Map<string, number>()]));
  const self = new Map<string, number>();
  const label = (n: ProfileNode) => {
    const f = n.callFrame;
    const where = f.url ? `${f.url.replace(/^.*\/(node_modules\/|dist\/)/, '$1')}:${f.lineNumber + 1}` : '';
    return `${f.functionName || '(anonymous)'} ${where}`.trim();
  };
  let total = 0;
  let busy = 0;
  let run = 0;
  const runs: number[] = [];
  p.samples.forEach((id, i) => {
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    const n = byId.get(id)!;
    total += dt;
    const name = label(n);
    self.set(name, (self.get(name) ?? 0) + dt);
    const onStack = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) onStack.add(byId.get(at)!.callFrame.functionName);
    for (const f of inclusive) {
      if (!onStack.has(f)) continue;
      within.set(f, within.get(f)! + dt);
      const m = below.get(f)!;
      m.set(name, (m.get(name) ?? 0) + dt);
    }
    if (IDLE.has(n.callFrame.functionName)) {
      if (run > 0) runs.push(run);
      run = 0;
    } else {
      busy += dt;
      run += dt;
    }
  });
  if (run > 0) runs.push(run);
  runs.sort((a, b) => b - a);
  const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([name, ms]) => `${ms.toFixed(1).padStart(9)} ms ${((ms / total) * 100).toFixed(1).padStart(5)} %  ${name}`);
  return [`profile: ${(total / 1000).toFixed(1)} s sampled, ${(busy / 1000).toFixed(1)} s not idle (${((busy / total) * 100).toFixed(1)} %)`,
    `longest stretches without an idle sample (ms): ${runs.slice(0, 10).map((r) => r.toFixed(1)).join(', ')}`,
    ...[...within].flatMap(([f, ms]) => [`inclusive: ${f} ${ms.toFixed(1)} ms; self time below it:`,
      ...[...below.get(f)!].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([n, t]) => `${t.toFixed(1).padStart(9)} ms  ${n}`)]),
    `top ${top} by self time:`, ...rows].join('\n');
}

if (process.argv[1] && basename(process.argv[1]) === 'cpu-profile-summary.js') {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node dist/bench/cpu-profile-summary.js FILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  process.stdout.write(`${summarize(JSON.parse(readFileSync(file, 'utf8')) as Profile, Number(process.argv[3] ?? 25), process.argv.slice(4))}\n`);
}
