/**
 * Driver of bench/profile-zygote.sh: N spawns through a profiling build of the
 * zygote (argv[2] is its directory), capturing per spawn and then with the
 * context cache, and the median of each stamped step (µs since the zygote
 * parsed the request; "-" where a step does not happen on that path: a_* are
 * A's, b_* B's on the cold path and T's on the cached one; node_* this
 * process's, run() called and settled).
 */
import 'reflect-metadata';
import { readFileSync, readlinkSync, unlinkSync } from 'node:fs';
import { defaultConfig } from '../src/common/defaults.js';
import { NullLoggerFactory } from '../src/logging/winston-logger-factory.js';
import { NodeProcessSpawner, SystemClock } from '../src/platform/node-platform.js';
import { ZygoteRunner, type UpcallRequest } from '../src/upcall/zygote-runner.js';
import { stats } from './harness.js';
import { LightContainer } from './light-container.js';
import { Pidfd } from '../src/ns/pidfd.js';
import { loadLibc } from '../src/ns/libc.js';

const [dir, nText = '300', mode = 'builtin', kind = 'unusual'] = process.argv.slice(2);
const n = Number(nText);

/**
 * The zygote's lines (one per spawn, in order) with the driver's own marks
 * (process.hrtime: CLOCK_MONOTONIC, as the zygote's at_ns) around each run():
 * node_sent is run() called, node_resolved its promise settled, both in µs
 * since the zygote parsed that request (node_sent negative).
 */
function steps(pid: number, marks: Array<[bigint, bigint]>): Map<string, number[]> {
  const path = `/tmp/ub-zygote-profile.${pid}.log`;
  const out = new Map<string, number[]>();
  const add = (k: string, v: number) => out.set(k, [...(out.get(k) ?? []), v]);
  const lines = readFileSync(path, 'utf8').trim().split('\n');
  for (let i = Math.floor(lines.length / 10); i < lines.length; i++) { // the first tenth is warm-up
    for (const kv of lines[i]!.split(' ')) {
      const [k, v] = kv.split('=');
      if (k === 'at_ns') {
        const at = BigInt(v!);
        if (marks[i]) {
          add('node_sent', Number(marks[i]![0] - at) / 1000);
          add('node_resolved', Number(marks[i]![1] - at) / 1000);
        }
      } else if (Number(v) >= 0) {
        add(k!, Number(v));
      }
    }
  }
  unlinkSync(path);
  return out;
}

const c = await LightContainer.start({ name: 'prof', unusual: kind === 'unusual' });
try {
  const stat = readFileSync(`/proc/${c.initPid}/stat`, 'utf8');
  const target = {
    initPid: c.initPid,
    initStartTime: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]),
    pidnsIno: Number(/\[(\d+)\]/.exec(readlinkSync(`/proc/${c.initPid}/ns/pid`))![1]),
    host: false,
    init: Pidfd.open(loadLibc(), c.initPid),
  };
  const req: UpcallRequest = mode === 'exec'
    ? { target, mode: 'exec', argv: ['/bin/true'], timeoutMs: 10_000, outputCap: 4096 }
    : { target, mode: 'builtin', builtin: 'netrelay', argv: [], timeoutMs: 10_000, outputCap: 4096 };
  const columns: Array<[string, Map<string, number[]>, number]> = [];
  for (const cache of [false, true]) {
    const r = new ZygoteRunner(new NodeProcessSpawner(), { ...defaultConfig(), nativeDir: dir! }, new NullLoggerFactory(), new SystemClock());
    r.configure({ contextCache: cache });
    const t: number[] = [];
    const marks: Array<[bigint, bigint]> = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const sent = process.hrtime.bigint();
      await r.run(req);
      marks.push([sent, process.hrtime.bigint()]);
      t.push(performance.now() - t0);
    }
    const pid = r.zygotePid!;
    await r.stop();
    columns.push([cache ? 'context cache' : 'capture per spawn', steps(pid, marks), stats('', t.slice(Math.floor(n / 10))).median]);
  }
  const median = (m: Map<string, number[]>, k: string) => (m.has(k) ? stats('', m.get(k)!).median : Infinity);
  // in the order the steps happen (by their median in the last column)
  const names = [...new Set(columns.flatMap(([, m]) => [...m.keys()]))].sort((a, b) => median(columns.at(-1)![1], a) - median(columns.at(-1)![1], b));
  process.stdout.write(`${n} spawns, ${mode} (${mode === 'exec' ? '/bin/true' : 'netrelay, empty stdin'}), ${kind} container; median µs since the zygote parsed the request ` +
    '(node_sent: run() called, node_resolved: its promise settled, by CLOCK_MONOTONIC)\n\n');
  process.stdout.write(`| step | ${columns.map(([name]) => name).join(' | ')} |\n|---|${columns.map(() => '---').join('|')}|\n`);
  for (const name of names) {
    process.stdout.write(`| ${name} | ${columns.map(([, m]) => (m.has(name) ? stats('', m.get(name)!).median.toFixed(0) : '-')).join(' | ')} |\n`);
  }
  process.stdout.write(`| (seen from Node: run() median, ms) | ${columns.map(([, , ms]) => ms.toFixed(3)).join(' | ')} |\n`);
} finally {
  await c.stop();
}
