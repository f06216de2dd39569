/**
 * scale: many registrations over many containers. Each container is as light
 * as a registration allows: `unshare --user --map-root-user --pid --mount
 * --fork --mount-proc`, whose pid 1 registers its "/" (a mount point) K times
 * with the C client (build/Release/ub-mount-helper --no-mount) and then waits
 * on its stdin (cat). Measured: registration latency on an empty broker and
 * once it holds all of them (a client inside a probe container, one
 * connection, sequential requests), the time to register them all, lookup
 * times (`list`, `show` by id, `show` by mount id) over the admin socket, the
 * broker's RSS and open fds, the state on disk (snapshot and journals), the
 * broker's longest event-loop block (its own monitorEventLoopDelay, served on
 * /metrics) while they register and during the late probe, and the time a
 * restarted broker takes to re-validate them all against the kernel (start to
 * "ready").
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { BrokerClient } from '../src/client/broker-client.js';
import { DEFAULT_NATIVE_DIR, PACKAGE_ROOT } from '../src/common/paths.js';
import type { RegistrationInfo } from '../src/common/types.js';
import { BrokerProcess } from '../tests/helpers/broker-process.js';
import { eventLoopDelayMs, fdCount, fmt, markdownTable, rssMb, scrapeMetrics, stats } from './harness.js';
import { LightContainer } from './light-container.js';
import type { Figures } from './targets.js';

const ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/', LANG: 'C.UTF-8' };
const HELPER = join(DEFAULT_NATIVE_DIR, 'ub-mount-helper');
/** 100, not 30: a median of 30 moved by ±50 % between runs on a shared machine. */
const PROBE_REGISTRATIONS = 100;
/** Idle time before the "held" RSS is read: past V8's memory reducer (it runs 8 s after a full GC when allocation is low, and may wait another round on a busy machine: 12 s was not always enough). */
const SETTLE_MS = 30_000;

/** pid 1: register "/" $2 times on socket $1, say how many worked, wait for EOF. */
const INIT = String.raw`
ok=0
for i in $(seq "$2"); do "$3" --socket "$1" --no-mount / >/dev/null 2>&1 && ok=$((ok+1)); done
echo "registered $ok"
exec cat >/dev/null
`;

class Registrant {
  private constructor(readonly proc: ChildProcess, readonly ok: number, private readonly exited: Promise<void>) {}

  static async start(socket: string, k: number): Promise<Registrant> {
    const proc = spawn('unshare', ['--user', '--map-root-user', '--pid', '--mount', '--fork', '--mount-proc', 'bash', '--norc', '--noprofile', '-c', INIT, 'init', socket, String(k), HELPER],
      { stdio: ['pipe', 'pipe', 'inherit'], env: ENV });
    const exited = new Promise<void>((resolve) => proc.once('close', () => resolve()));
    const line = await new Promise<string>((resolve, reject) => {
      proc.once('close', (code) => reject(new Error(`registrant exited ${code}`)));
      createInterface({ input: proc.stdout! }).once('line', resolve);
    });
    return new Registrant(proc, Number(/registered (\d+)/.exec(line)?.[1] ?? 0), exited);
  }

  async stop(): Promise<void> {
    this.proc.stdin!.end();
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * `register` of the probe's "/" n times over one tenant connection, from inside the probe, each
 * followed by a `ping` (the same round trip without the work: what the machine's load alone costs
 * at that moment), each in ms; then `list` 5 times.
 */
async function probeLatencies(probe: LightContainer, socket: string, n: number): Promise<{ register: number[]; ping: number[]; list: number[] }> {
  const client = join(PACKAGE_ROOT, 'dist', 'src', 'client', 'broker-client.js');
  const script = `const { BrokerClient } = await import(${JSON.stringify(client)});
const c = await BrokerClient.connect(${JSON.stringify(socket)});
const t = [];
const p = [];
for (let i = 0; i < ${n}; i++) {
  let t0 = performance.now(); await c.register('/'); t.push(performance.now() - t0);
  t0 = performance.now(); await c.ping(); p.push(performance.now() - t0);
}
const l = [];
for (let i = 0; i < 5; i++) { const t0 = performance.now(); await c.list(); l.push(performance.now() - t0); }
c.close();
console.log(JSON.stringify({ register: t, ping: p, list: l }));`;
  const r = await probe.exec([process.execPath, '--input-type=module', '-e', script]);
  if (r.code !== 0) throw new Error(`probe failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { register: number[]; ping: number[]; list: number[] };
}

/** Bytes of the state on disk: the snapshot and its journals. */
function stateBytes(dir: string): number {
  return readdirSync(dir).filter((f) => /^registrations\.(json|journal\.\d+)$/.test(f)).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}

/**
 * UB_BENCH_HEAPSNAPSHOT=1 with UB_BROKER_NODE_ARGS='--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=DIR': a heap
 * snapshot of the full broker (what 10,000 registrations hold), written to DIR before the restart.
 */
/** UB_BENCH_MEMORY_DIR=DIR: the broker's /proc smaps and status at one moment, as DIR/smaps-<when>.txt and status-<when>.txt. */
function saveMemoryIfAsked(pid: number, when: string): void {
  const dir = process.env.UB_BENCH_MEMORY_DIR;
  if (dir === undefined) return;
  writeFileSync(join(dir, `smaps-${when}.txt`), readFileSync(`/proc/${pid}/smaps`));
  writeFileSync(join(dir, `status-${when}.txt`), readFileSync(`/proc/${pid}/status`));
}

async function heapSnapshotIfAsked(pid: number, output: string): Promise<void> {
  const dir = process.env.UB_BENCH_MEMORY_DIR;
  if (dir === undefined) return;
  saveMemoryIfAsked(pid, 'idle');
  writeFileSync(join(dir, 'broker-output.txt'), output);
  if (process.env.UB_BENCH_HEAPSNAPSHOT !== '1') return;
  process.kill(pid, 'SIGUSR2');
  await new Promise((res) => setTimeout(res, 20_000));
}

async function timeOp<T>(n: number, op: () => Promise<T>): Promise<number[]> {
  const t: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await op();
    t.push(performance.now() - t0);
  }
  return t;
}

export async function scaleBench(figures: Figures = {}): Promise<string> {
  // 1,000 with --quick too (about 50 s): the RSS target is at 10,000 registrations.
  const containers = 1000;
  const perContainer = 10;
  const broker = new BrokerProcess();
  const registrants: Registrant[] = [];
  let probe: LightContainer | null = null;
  try {
    const metrics = join(broker.dir, 'metrics.sock');
    const serveArgs = ['--log-level', 'info', '--metrics', metrics];
    await broker.start(serveArgs);
    probe = await LightContainer.start({ name: 'bench-scale-probe' });
    const rss0 = rssMb(broker.pid!);
    saveMemoryIfAsked(broker.pid!, 'empty');
    const fds0 = fdCount(broker.pid!);
    const early = await probeLatencies(probe, broker.tenantSocket, PROBE_REGISTRATIONS);
    const at0 = early.register;

    await scrapeMetrics(metrics); // the event-loop window starts here
    const t0 = performance.now();
    const batch = 25;
    for (let k = 0; k < containers; k += batch) {
      registrants.push(...await Promise.all(Array.from({ length: Math.min(batch, containers - k) }, () => Registrant.start(broker.tenantSocket, perContainer))));
    }
    const fillSeconds = (performance.now() - t0) / 1000;
    const registered = registrants.reduce((a, r) => a + r.ok, 0);
    const fillLoopMax = eventLoopDelayMs(await scrapeMetrics(metrics), 'max');
    const late = await probeLatencies(probe, broker.tenantSocket, PROBE_REGISTRATIONS);
    const lateLoop = await scrapeMetrics(metrics);
    const atN = late.register;
    const tenantList = stats('', late.list).median;
    const total = registered + 2 * PROBE_REGISTRATIONS;

    const admin = await BrokerClient.connect(broker.adminSocket);
    let list: RegistrationInfo[] = [];
    const listT = await timeOp(5, async () => (list = await admin.list()));
    const some = list.filter((_, i) => i % Math.max(1, Math.floor(list.length / 50)) === 0).slice(0, 50);
    let i = 0;
    const showIdT = await timeOp(some.length, () => admin.request('show', { id: some[i++ % some.length]!.id }));
    admin.close();
    const rss = rssMb(broker.pid!);
    saveMemoryIfAsked(broker.pid!, 'after-lists');
    const fds = fdCount(broker.pid!);
    // Also held, not in use: RSS once the broker has been idle past V8's memory reducer (it collects after about
    // 8 s of low allocation, when it gets to run), without the garbage of the five 4 MB `list` replies.
    await new Promise((res) => setTimeout(res, SETTLE_MS));
    const rssSettled = rssMb(broker.pid!);
    await heapSnapshotIfAsked(broker.pid!, broker.output);
    // The target's figure is the one right after the lists: the idle one depends on whether V8's memory reducer
    // got to run in the window (87-149 MB over five runs), so it is shown beside it, not counted.
    figures.rss = { value: rss, detail: `${registered + 2 * PROBE_REGISTRATIONS} registrations over ${containers + 1} containers, right after five full \`list\`s; ${rssSettled.toFixed(0)} MB after ${SETTLE_MS / 1000} s idle; empty broker ${rss0.toFixed(0)} MB` };
    const stateOnDisk = stateBytes(broker.stateDir);

    // Restart: SIGTERM, start again on the same state dir; "ready" comes after every record was re-validated.
    await broker.stop('SIGTERM');
    const r0 = performance.now();
    await broker.start(serveArgs);
    const restartSeconds = (performance.now() - r0) / 1000;
    const restored = /"message":"registrations restored"[^\n]*"restored":(\d+)/.exec(broker.output.slice(broker.output.lastIndexOf('"message":"registrations restored"') - 400));
    const after = await BrokerClient.connect(broker.adminSocket);
    const listed = (await after.list()).length;
    after.close();

    const s0 = stats('', at0);
    const sN = stats('', atN);
    return `${containers} light containers (bench/scale-bench.ts), each registering its "/" ${perContainer} times with the C client from its pid 1, ${batch} containers starting at a time; ` +
      `a probe container's Node client registers ${PROBE_REGISTRATIONS} times in a row over one connection (each registration followed by a \`ping\`) before and after.\n\n` +
      markdownTable(['measure', 'value'], [
        ['registrations held', `${total} (${registered} of ${containers * perContainer} by the containers)`],
        ['registration latency, empty broker: median / p90 / max', `${fmt(s0.median)} / ${fmt(s0.p90)} / ${fmt(Math.max(...at0))} ms`],
        [`registration latency at ${registered + PROBE_REGISTRATIONS}: median / p90 / max`, `${fmt(sN.median)} / ${fmt(sN.p90)} / ${fmt(Math.max(...atN))} ms`],
        ['latency ratio (median at N / median at 0)', `${(sN.median / s0.median).toFixed(2)}x`],
        ['`ping` after each registration (load reference), median at 0 / at N', `${fmt(stats('', early.ping).median)} / ${fmt(stats('', late.ping).median)} ms`],
        ['time to register them all (containers start, exec the C client, register)', `${fillSeconds.toFixed(1)} s (${(registered / fillSeconds).toFixed(0)}/s)`],
        ['`list` of all (admin), median of 5', `${fmt(stats('', listT).median)} ms`],
        ['`show` by id, median of 50', `${fmt(stats('', showIdT).median)} ms`],
        [`\`list\` from inside the probe container (its own ${2 * PROBE_REGISTRATIONS}, filtered out of all), median of 5`, `${fmt(tenantList)} ms`],
        ['broker RSS: empty / full, right after the lists / full, after ' + `${SETTLE_MS / 1000} s idle`, `${rss0.toFixed(0)} / ${rss.toFixed(0)} / ${rssSettled.toFixed(0)} MB`],
        ['broker open fds: empty / full', `${fds0} / ${fds}`],
        ['event-loop delay max: while they register / during the late probe (1 ms resolution)', `${fmt(fillLoopMax, 1)} / ${fmt(eventLoopDelayMs(lateLoop, 'max'), 1)} ms (p99 ${fmt(eventLoopDelayMs(lateLoop, 'p99'), 1)} ms)`],
        ['state on disk (snapshot + journals)', `${(stateOnDisk / 1e6).toFixed(1)} MB`],
        ['restart (SIGTERM, start, re-validate all, ready)', `${restartSeconds.toFixed(2)} s; restored ${restored?.[1] ?? '?'}; \`list\` after: ${listed}`],
      ]);
  } finally {
    await broker.dispose();
    for (let k = 0; k < registrants.length; k += 50) await Promise.all(registrants.slice(k, k + 50).map((r) => r.stop()));
    await probe?.stop();
  }
}
