/**
 * unmount to `unmounted`: how long after `umount` returns inside a container
 * the broker marks the registration `unmounted`, by each method (docs/walk-rule.md,
 * case 9): three brokers side by side, one per method (fanotify where the kernel
 * has it; statmount and mountinfo forced with UB_KERNEL_COMPAT), samples
 * interleaved. Each sample: a fresh tmpfs in a light container, registered by
 * host root (`register-for`), then `umount` timed by bash inside the container
 * ($EPOCHREALTIME when it returned) against the timestamp of the broker's audit
 * line `unmounted` (milliseconds: the log's resolution). Each broker also keeps
 * one mount watched throughout, and each umount waits a random 0-600 ms first,
 * so a polling method is sampled at every phase of its 500 ms period.
 */
import { BrokerClient } from '../src/client/broker-client.js';
import type { RegistrationInfo } from '../src/common/types.js';
import { BrokerProcess } from '../tests/helpers/broker-process.js';
import { ShellAgent } from './agent.js';
import { fmt, markdownTable, stats } from './harness.js';
import { LightContainer } from './light-container.js';

const METHODS = [
  { method: 'fanotify', compat: null },
  { method: 'statmount', compat: 'no-fanotify-mnt' },
  { method: 'mountinfo', compat: 'no-statmount-ns' },
] as const;

/** The timestamp (ms since the epoch) of `broker`'s audit line saying `id` turned unmounted, once it is there. */
async function unmountedAt(broker: BrokerProcess, id: string, method: string): Promise<number> {
  const end = Date.now() + 10_000;
  for (;;) {
    const line = broker.output.split('\n').reverse().find((l) => l.includes('"message":"unmounted"') && l.includes(`"id":"${id}"`));
    if (line !== undefined) {
      const j = JSON.parse(line) as { timestamp: string; method: string };
      if (j.method !== method) throw new Error(`mount-watch bench: ${id} was seen by ${j.method}, not ${method}`);
      return Date.parse(j.timestamp);
    }
    if (Date.now() > end) throw new Error(`mount-watch bench: ${id} not unmounted after 10 s (${method})`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

export async function mountWatchBench(quick: boolean): Promise<string> {
  const samples = quick ? 8 : 30;
  const brokers = METHODS.map(() => new BrokerProcess());
  let c: LightContainer | null = null;
  let agent: ShellAgent | null = null;
  const clients: BrokerClient[] = [];
  try {
    await Promise.all(brokers.map((b, i) => b.start(['--log-level', 'info'], METHODS[i]!.compat ? ['env', `UB_KERNEL_COMPAT=${METHODS[i]!.compat}`] : [])));
    c = await LightContainer.start({ name: 'bench-mwatch' });
    const base = await c.exec(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'ub-bench-base', '/mnt']);
    if (base.code !== 0) throw new Error(`mount-watch bench: base tmpfs: ${base.stderr}`);
    agent = new ShellAgent(c.initPid);
    for (const b of brokers) clients.push(await BrokerClient.connect(b.adminSocket));
    // A mount each broker keeps watching throughout, so a polling method's timer runs on as in a broker with
    // registrations (it stops when nothing is watched); each umount then comes at a random point of its period.
    for (const [j, cl] of clients.entries()) {
      const ballast = `/mnt/ballast-${j}`;
      const m = await c.exec(['sh', '-c', `mkdir -p ${ballast} && mount -t tmpfs -o size=1m ub-bench-ballast ${ballast}`]);
      if (m.code !== 0) throw new Error(`mount-watch bench: mount ${ballast}: ${m.stderr}`);
      await cl.request('register-for', { pid: c.initPid, mountpoint: ballast, fstype: 'cifs', source: '//ballast.test/share' });
    }
    const latencies = METHODS.map(() => [] as number[]);
    for (let i = 0; i < samples; i++) {
      for (let k = 0; k < METHODS.length; k++) {
        const j = (k + i) % METHODS.length;
        const path = `/mnt/s${i}-${j}`;
        const m = await c.exec(['sh', '-c', `mkdir -p ${path} && mount -t tmpfs -o size=1m ub-bench-s ${path}`]);
        if (m.code !== 0) throw new Error(`mount-watch bench: mount ${path}: ${m.stderr}`);
        const reg = await clients[j]!.request<RegistrationInfo>('register-for', { pid: c.initPid, mountpoint: path, fstype: 'cifs', source: '//bench.test/share' });
        await new Promise((res) => setTimeout(res, Math.random() * 600));
        const r = await agent.run(['umount', path]);
        if (r.code !== 0) throw new Error(`mount-watch bench: umount ${path} failed (${r.code})`);
        latencies[j]!.push((await unmountedAt(brokers[j]!, reg.id, METHODS[j]!.method)) - r.endMs);
      }
    }
    const rows = METHODS.map(({ method, compat }, j) => {
      const s = stats(method, latencies[j]!);
      const max = Math.max(...latencies[j]!);
      const min = Math.min(...latencies[j]!);
      return [`${method}${compat ? ` (UB_KERNEL_COMPAT=${compat})` : ''}`, s.n, ...[min, s.median, s.p90, max].map((x) => fmt(Math.round(x), 0))];
    });
    return `${samples} unmounts per method, interleaved, three brokers side by side; a fresh tmpfs each, registered with register-for (host root) ` +
      `and unmounted inside a light container after a random 0-600 ms (each broker keeps one more mount watched throughout, so its polling timer runs on). Figure: the broker's audit line \`unmounted\` (ms timestamps) minus the moment \`umount\` returned ` +
      `(bash's $EPOCHREALTIME inside the container, the same clock); the log's timestamps have 1 ms resolution. ` +
      `A figure of 0 or below: the broker logged the unmount before bash had seen umount exit (the event path is shorter than a process's exit and wait).\n\n` +
      markdownTable(['method', 'n', 'min ms', 'median ms', 'p90 ms', 'max ms'], rows);
  } finally {
    for (const cl of clients) cl.close();
    await agent?.close();
    await c?.stop();
    await Promise.all(brokers.map((b) => b.dispose()));
  }
}
