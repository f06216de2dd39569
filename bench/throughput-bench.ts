/**
 * throughput: N concurrent `resolve` upcalls (DNS, the kernel's dns_resolver
 * answer format) through the socket protocol (admin socket, the broker's
 * default limits) across M containers, each registered by its own mounter.
 * Names come from each container's /etc/hosts, so the network is not what is
 * measured (a name from a DNS server adds one datagram exchange through the
 * relay). Per M: upcalls/s, latency percentiles, CPU per upcall, the broker's
 * event-loop blocking (its 1 ms monitorEventLoopDelay, served on /metrics, over
 * exactly the measured window) and, as a client sees it, `ping` latency on a
 * separate connection every 10 ms.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BrokerClient } from '../src/client/broker-client.js';
import { BrokerProcess } from '../tests/helpers/broker-process.js';
import { registerRoot } from './dns-bench.js';
import { cpuSeconds, eventLoopDelayMs, fmt, gcPauseMs, machineBusySeconds, markdownTable, rssMb, scrapeMetrics, stats } from './harness.js';
import { LightContainer } from './light-container.js';
import { runPrefix } from './rule-file.js';
import type { Figures } from './targets.js';

const NAMES_PER_CONTAINER = 64;
/** Requests in flight per connection (the broker's connectionInFlight is 16) and connections used. */
const PER_CONNECTION = 2;

/** The broker's zygote: its child named upcall-zygote. */
function zygoteOf(brokerPid: number): number | null {
  const kids = readFileSync(`/proc/${brokerPid}/task/${brokerPid}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number);
  return kids.find((k) => {
    try {
      return readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'upcall-zygote';
    } catch {
      return false;
    }
  }) ?? null;
}

function memAvailableMb(): number {
  return Number(/MemAvailable:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))![1]) / 1024;
}

/** Open-loop round: requests sent at this rate whatever the answers, latency from the scheduled send. */
const OPEN_LOOP_RATE = 1000;

interface Round {
  m: number;
  n: number | string;
  ok: number;
  errors: Map<string, number>;
  seconds: number;
  latencies: number[];
  brokerCpu: number;
  zygoteCpu: number;
  machineCpu: number;
  loopMax: number;
  gcMax: number;
  gcTotal: number;
  loopP99: number;
  pings: number[];
  /** The measured window, ISO times (bench/loop-stalls-summary.ts takes them). */
  window: [string, string];
}

export async function throughputBench(quick: boolean, figures: Figures = {}): Promise<string> {
  const run = runPrefix('bt');
  const shapes = [1, 10, 100];
  const seconds = quick ? 4 : 15;
  const broker = new BrokerProcess();
  const metricsSock = join(broker.dir, 'metrics.sock');
  const config = join(broker.dir, 'config.json');
  writeFileSync(config, JSON.stringify({ metricsListen: metricsSock }));
  const containers: LightContainer[] = [];
  const clients: BrokerClient[] = [];
  const rounds: Round[] = [];
  const mem0 = memAvailableMb();
  try {
    await broker.start(['--config', config, '--log-level', 'info']);
    const pid = broker.pid!;
    const max = Math.max(...shapes);
    const name = (k: number, i: number) => `${run}-c${k}-n${i}.test`;
    for (let k = 0; k < max; k += 20) {
      containers.push(...await Promise.all(Array.from({ length: Math.min(20, max - k) }, (_, j) => LightContainer.start({
        name: `bench-tp${k + j}`,
        hosts: Array.from({ length: NAMES_PER_CONTAINER }, (_, i) => `198.51.100.${(i % 250) + 1} ${name(k + j, i)}`).join('\n'),
      }))));
    }
    const memContainers = mem0 - memAvailableMb();
    const regs: string[] = [];
    for (let k = 0; k < max; k += 20) regs.push(...await Promise.all(containers.slice(k, k + 20).map((c) => registerRoot(c, broker.tenantSocket))));
    const pinger = await BrokerClient.connect(broker.adminSocket);
    clients.push(pinger);

    const rounds0 = shapes.map((m) => ({ m, open: false })).concat([{ m: max, open: true }]);
    for (const { m, open } of rounds0) {
      const n = open ? 128 : Math.min(64, 16 * m); // the broker runs at most 16 upcalls at once per container (contextUpcalls)
      const conns = await Promise.all(Array.from({ length: Math.ceil(n / PER_CONNECTION) }, () => BrokerClient.connect(broker.adminSocket)));
      clients.push(...conns);
      let next = 0;
      const one = async (w: number, record: Round | null, scheduled?: number) => {
        const k = next++ % m;
        const t0 = scheduled ?? performance.now();
        try {
          const r = await conns[Math.floor(w / PER_CONNECTION)]!.request<{ text: string | null }>('resolve', { mount: regs[k]!, description: name(k, next % NAMES_PER_CONTAINER) });
          if (r.text === null) throw new Error('no address');
          if (record) {
            record.ok++;
            record.latencies.push(performance.now() - t0);
          }
        } catch (err) {
          if (record) {
            const code = (err as { code?: string }).code ?? (err as Error).message;
            record.errors.set(code, (record.errors.get(code) ?? 0) + 1);
          }
        }
      };
      const closedLoad = async (ms: number, record: Round | null) => {
        const end = performance.now() + ms;
        await Promise.all(Array.from({ length: n }, async (_, w) => {
          while (performance.now() < end) await one(w, record);
        }));
      };
      /** OPEN_LOOP_RATE requests per second, each on the next connection, timed from when it was due. */
      const openLoad = async (ms: number, record: Round | null) => {
        const start = performance.now();
        const inFlight = new Set<Promise<void>>();
        let sent = 0;
        while (performance.now() - start < ms) {
          const due = Math.floor(((performance.now() - start) * OPEN_LOOP_RATE) / 1000);
          for (; sent < due; sent++) {
            const p = one((sent % conns.length) * PER_CONNECTION, record, start + (sent * 1000) / OPEN_LOOP_RATE);
            inFlight.add(p);
            void p.finally(() => inFlight.delete(p));
          }
          await new Promise((res) => setTimeout(res, 1));
        }
        await Promise.all(inFlight);
      };
      const load = open ? openLoad : closedLoad;
      await load(1000, null); // warm-up: the zygote's context cache fills
      const zyg = zygoteOf(pid);
      const r: Round = { m, n: open ? `open loop, ${OPEN_LOOP_RATE}/s` : n, ok: 0, errors: new Map(), seconds: 0, latencies: [], brokerCpu: 0, zygoteCpu: 0, machineCpu: 0, loopMax: 0, loopP99: 0, gcMax: 0, gcTotal: 0, pings: [], window: ['', ''] };
      await scrapeMetrics(metricsSock); // resets the loop-delay window
      const cpu0 = { b: cpuSeconds(pid), z: zyg ? cpuSeconds(zyg) : 0, all: machineBusySeconds() };
      let pinging = true;
      const pings = (async () => {
        while (pinging) {
          const t0 = performance.now();
          try {
            await pinger.ping();
            r.pings.push(performance.now() - t0);
          } catch (err) {
            // E_BUSY at the global request limit (closed loop at 64 in flight): counted as an error, not a crash.
            const code = `ping ${(err as { code?: string }).code ?? (err as Error).message}`;
            r.errors.set(code, (r.errors.get(code) ?? 0) + 1);
          }
          await new Promise((res) => setTimeout(res, 10));
        }
      })();
      const t0 = performance.now();
      r.window[0] = new Date().toISOString();
      await load(seconds * 1000, r);
      r.window[1] = new Date().toISOString();
      r.seconds = (performance.now() - t0) / 1000;
      pinging = false;
      await pings;
      const metrics = await scrapeMetrics(metricsSock);
      r.loopMax = eventLoopDelayMs(metrics, 'max');
      r.gcMax = gcPauseMs(metrics, 'max');
      r.gcTotal = gcPauseMs(metrics, 'total');
      r.loopP99 = eventLoopDelayMs(metrics, 'p99');
      r.brokerCpu = cpuSeconds(pid) - cpu0.b;
      r.zygoteCpu = zyg ? cpuSeconds(zyg) - cpu0.z : NaN;
      r.machineCpu = machineBusySeconds() - cpu0.all;
      rounds.push(r);
      for (const c of conns) c.close();
    }
    const fds = readdirSync(`/proc/${pid}/fd`).length;
    const open = rounds.find((r) => typeof r.n === 'string');
    if (open) figures.loop = { value: open.loopMax, detail: `p99 ${fmt(open.loopP99, 1)} ms; GC pause max ${fmt(open.gcMax, 1)} ms; ${seconds} s window` };
    const rows = rounds.map((r) => {
      const s = stats('', r.latencies);
      const p = stats('', r.pings);
      const per = (cpu: number) => fmt((cpu / Math.max(1, r.ok)) * 1000, 3);
      const errors = [...r.errors].map(([k, v]) => `${k} ${v}`).join(', ') || '0';
      return [r.m, r.n, r.ok, errors, (r.ok / r.seconds).toFixed(0), fmt(s.median, 2), fmt(s.p90, 2), fmt(s.p99, 2),
        per(r.brokerCpu), per(r.zygoteCpu), per(r.machineCpu), fmt(r.loopMax, 1), fmt(r.loopP99, 1), fmt(r.gcMax, 1), `${((r.gcTotal / 1000 / r.seconds) * 100).toFixed(1)} %`, fmt(p.p99, 2), fmt(Math.max(...r.pings), 1)];
    });
    return `${seconds} s of load per row, after 1 s of warm-up: closed loop (N requests always in flight), then open loop (${OPEN_LOOP_RATE} requests/s sent on schedule whatever the answers, latency counted from when each was due: the target's "1,000/s with p99 under 20 ms"); \`resolve\` of a name from the container's /etc/hosts over the admin socket ` +
      `(${PER_CONNECTION} requests in flight per connection; the broker's default limits: at most 16 upcalls at once per container). ` +
      `Containers: light ones (bench/light-container.ts: unshare + bash as pid 1; MemAvailable fell ${memContainers.toFixed(0)} MB for ${max} of them), each with its own registration. ` +
      `CPU per upcall: the broker process, its zygote (the per-upcall processes are the containers' children and are not in it), and the whole machine (busy time of both cores: includes the containers' upcall processes, and anything else running). ` +
      `Event loop: the broker's own monitorEventLoopDelay (1 ms resolution) over exactly the measured window, and what of it was garbage collection (its GC pauses, perf_hooks "gc" entries, served as upcall_broker_gc_pause_seconds: the longest, and the share of the window spent in GC); ping: a client's \`ping\` round trip on its own connection every 10 ms during the load.\n\n` +
      markdownTable(['containers M', 'in flight N', 'upcalls ok', 'errors', 'upcalls/s', 'median ms', 'p90 ms', 'p99 ms', 'broker CPU ms/upcall', 'zygote CPU ms/upcall', 'machine CPU ms/upcall', 'loop delay max ms', 'loop delay p99 ms', 'GC pause max ms', 'time in GC', 'ping p99 ms', 'ping max ms'], rows) +
      `\n\nBroker at the end: RSS ${rssMb(pid).toFixed(0)} MB, ${fds} open fds.` +
      (open ? ` Open-loop window: ${open.window[0]} ${open.window[1]} (what stalled the loop in it: bench/loop-stalls.ts).` : '');
  } finally {
    for (const c of clients) c.close();
    // SIGTERM first: a broker run with --cpu-prof (UB_BROKER_NODE_ARGS) writes its profile as it exits.
    await broker.stop('SIGTERM').catch(() => undefined);
    // UB_BENCH_BROKER_OUTPUT=FILE: the broker's whole output (its log; V8's --trace-gc lines under UB_BROKER_NODE_ARGS).
    if (process.env.UB_BENCH_BROKER_OUTPUT) writeFileSync(process.env.UB_BENCH_BROKER_OUTPUT, broker.output);
    await broker.dispose();
    for (let k = 0; k < containers.length; k += 25) await Promise.all(containers.slice(k, k + 25).map((c) => c.stop()));
  }
}
