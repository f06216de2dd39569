/**
 * A tenant cannot crash the broker or starve the others (issue 16, findings
 * 0-3), on a real broker and real containers:
 * - 64 connections that never read, streaming big and malformed requests, then
 *   reset: the broker lives, its memory stays bounded, another container is served;
 * - connections held from nested pid namespaces count as one container, and
 *   never lock host root out of the admin socket; half a frame is timed out;
 * - never-answered lookups from contexts nested in one container share that
 *   container's upcall slots, and a request-key lookup ends with its budget.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../../src/common/paths.js';
import type { RegistrationInfo } from '../../src/common/types.js';
import { summary } from '../helpers/batch-client.js';
import { BrokerProcess, CLI } from '../helpers/broker-process.js';
import { cliIn, mountTmpfs } from '../helpers/in-container.js';
import { admin, adminCode, BATCH_CLIENT, batchArgv, rssKiB, VICTIM_PER_SECOND } from '../helpers/reliability.js';
import { until } from '../helpers/until.js';
import { Testbed, type TestContainer } from '../testbed/index.js';

const PEER = join(PACKAGE_ROOT, 'dist', 'tests', 'integration', 'reliability-hostile-peer.js');
const HANDLER = join(PACKAGE_ROOT, 'build', 'Release', 'upcall-request-key');
/**
 * The bound stated for the flood below: the broker's RSS may grow by at most this much. Measured +60 to +97 MiB,
 * flat after 5 s (64 KiB of replies queued per connection, then no more is read; the rest is V8's heap under the
 * flood's garbage); on 35467c6 the same flood grew it by 142 to 228 MiB in 8 s, still growing (the issue: +420 MB in 15 s).
 */
const RSS_GROWTH_BOUND_KIB = 128 * 1024;

const bed = new Testbed();
let a: TestContainer;
let b: TestContainer;

type Series = { counts: Record<string, number>; ms: ReturnType<typeof summary> };

async function run<T>(c: TestContainer, argv: string[], timeoutMs = 90_000): Promise<T> {
  const r = await c.exec(argv, { timeoutMs });
  assert.equal(r.code, 0, `${argv.slice(0, 3).join(' ')} in ${c.name}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as T;
}
const peerArgv = (socket: string, spec: unknown) => [process.execPath, PEER, socket, JSON.stringify(spec)];

before(async () => {
  const made = await Promise.all(['tfla', 'tflb'].map((name) => bed.create({
    name,
    records: [{ name: 'fast.test', type: 'A', address: '192.0.2.60', ttl: 60 }, { name: 'slow.test', type: 'A', address: '192.0.2.61' }],
    // slow.test is never answered, and in A each try waits 10 s: a lookup holds its slots that long.
    dnsBehaviours: [{ name: 'slow.test', kind: 'noanswer' }],
    ...(name === 'tfla' ? { resolvConf: 'nameserver 127.0.0.1\noptions timeout:10 attempts:1\n' } : {}),
  })));
  a = made[0]!;
  b = made[1]!;
  for (const c of [a, b]) await mountTmpfs(c, '/mnt/tf');
});
after(() => bed.dispose());

async function registerOn(broker: BrokerProcess, c: TestContainer, path = '/mnt/tf'): Promise<string> {
  const r = await cliIn<RegistrationInfo>(c, ['register', '--socket', broker.tenantSocket, '--mount', path]);
  assert.equal(r.code, 0, JSON.stringify(r.json));
  return r.json.id;
}

describe('default limits, a DNS relay per upcall', () => {
  const broker = new BrokerProcess();
  const reg = new Map<TestContainer, string>();
  before(async () => {
    // No relay kept between upcalls: every lookup needs a zygote slot, as a kept relay's renewal does.
    const cfg = join(broker.dir, 'config.json');
    writeFileSync(cfg, JSON.stringify({ dns: { relayReuseMs: 0 } }));
    await broker.start(['--config', cfg]);
    for (const c of [a, b]) reg.set(c, await registerOn(broker, c));
  });
  after(() => broker.dispose());

  const fast = (c: TestContainer) => ({ op: 'resolve', params: { mount: reg.get(c)!, description: 'fast.test' }, perSecond: VICTIM_PER_SECOND });

  test('72 connections (64 accepted) that never read stream big and malformed requests, then reset: the broker lives, RSS stays bounded, B is served', async () => {
    await run(b, batchArgv(broker.tenantSocket, { mode: 'series', ...fast(b), durationMs: 500 })); // warm up
    const baseline = rssKiB(broker.pid!);
    let peak = baseline;
    const samples: number[] = [];
    const sampler = setInterval(() => {
      samples.push(rssKiB(broker.pid!));
      peak = Math.max(peak, samples.at(-1)!);
    }, 100);
    let flood: { connected: number; bytesWritten: number };
    let during: Series;
    try {
      [flood, during] = await Promise.all([
        run<{ connected: number; bytesWritten: number }>(a, peerArgv(broker.tenantSocket, { mode: 'flood', connections: 72, writeOn: 64, durationMs: 8000, pathBytes: 4096 })),
        run<Series>(b, batchArgv(broker.tenantSocket, { mode: 'series', ...fast(b), durationMs: 5000, startAfterMs: 1500 })),
      ]);
    } finally {
      clearInterval(sampler);
    }
    await new Promise((r) => setTimeout(r, 500)); // the resets reach the broker
    assert.equal(flood.connected, 72, 'all connected (the broker refuses 8 of them: 64 per container)');
    assert.deepEqual(broker.crashLines(), [], 'no crash');
    assert.equal(await adminCode(broker, 'ping'), 'ok', 'the broker is alive and serving');
    const growth = peak - baseline;
    console.log(`# flood: ${(flood.bytesWritten / 1048576).toFixed(1)} MiB written; broker RSS ${baseline} KiB -> peak ${peak} KiB (+${growth} KiB); `
      + `each second: ${samples.filter((_, i) => i % 10 === 0).map((k) => Math.round(k / 1024)).join(' ')} MiB`);
    console.log(`# B during the flood: ${JSON.stringify({ counts: during.counts, ms: during.ms })}`);
    assert.ok(growth < RSS_GROWTH_BOUND_KIB, `RSS grew by ${growth} KiB (bound ${RSS_GROWTH_BOUND_KIB} KiB)`);
    assert.deepEqual(Object.keys(during.counts), ['ok'], `B was served throughout: ${JSON.stringify(during.counts)}`);
    assert.ok(during.ms.n >= 20, `B was served steadily: ${JSON.stringify(during)}`);
  });

  test('never-answered lookups from 4 contexts nested in A share A\'s upcall slots: B\'s lookups keep their latency', async () => {
    const baseline = await run<Series>(b, batchArgv(broker.tenantSocket, { mode: 'series', ...fast(b), durationMs: 1500 }));
    // Each nested container (own user, pid and mount namespaces; A's network) registers a mount of its own
    // and floods never-answered lookups through it.
    const nested = (i: number) => ['unshare', '--user', '--map-root-user', '--pid', '--mount', '--fork', '--kill-child', 'sh', '-c',
      `mkdir -p /mnt/n${i} && mount -t tmpfs n${i} /mnt/n${i} && "$0" "$1" register --json --socket "$2" --mount /mnt/n${i} >/dev/null && exec "$0" "$3" "$2" "$4"`,
      process.execPath, CLI, broker.tenantSocket, BATCH_CLIENT,
      JSON.stringify({ mode: 'flood', op: 'resolve', params: { mount: `/mnt/n${i}`, description: 'slow.test' }, connections: 2, inFlight: 16, durationMs: 7000 })];
    const [floods, during] = await Promise.all([
      Promise.all([0, 1, 2, 3].map((i) => run<{ counts: Record<string, number> }>(a, nested(i)))),
      run<Series>(b, batchArgv(broker.tenantSocket, { mode: 'series', ...fast(b), durationMs: 4000, startAfterMs: 2000 })),
    ]);
    const busy = floods.reduce((n, f) => n + (f.counts['E_BUSY'] ?? 0), 0);
    console.log(`# nested flood: ${JSON.stringify(floods.map((f) => f.counts))}; B ${JSON.stringify(during)}`);
    assert.ok(busy > 0, `A was held to one container's slots: ${JSON.stringify(floods.map((f) => f.counts))}`);
    assert.deepEqual(Object.keys(during.counts), ['ok'], `B was never refused: ${JSON.stringify(during.counts)}`);
    // Generous (the flood's E_BUSY answers take CPU too): unshared slots made B wait for A's 10 s lookups.
    const bound = Math.max(1000, 5 * baseline.ms.p99);
    assert.ok(during.ms.p99 < bound, `B's p99 ${during.ms.p99} ms under the flood (baseline ${JSON.stringify(baseline.ms)}, bound ${bound} ms)`);
  });

  test('a request-key lookup ends with the handler\'s budget: its slots are free for the next request at once', async () => {
    const key = (description: string, timeoutMs: number) => admin<{ action: string; reason: string }>(broker, 'request-key', {
      keyId: 1000 + Math.floor(Math.random() * 1e6), op: 'create', type: 'dns_resolver', description,
      requesterPid: a.initPid, requesterStartTime: Number(a.initStartTime), uid: 0, gid: 0, timeoutMs,
    });
    const slow = await Promise.all(Array.from({ length: 16 }, () => key('slow.test', 600)));
    assert.ok(slow.every((d) => d.action === 'reject'), JSON.stringify(slow));
    await new Promise((r) => setTimeout(r, 300));
    const next = await key('fast.test', 3000);
    assert.equal(next.action, 'instantiate', `A's 16 slots were released with the budget: ${next.reason}`);
  });
});

describe('small limits: 4 connections per container, 8 in all, 1 s idle timeout', () => {
  const broker = new BrokerProcess();
  before(async () => {
    const cfg = join(broker.dir, 'limits.json');
    writeFileSync(cfg, JSON.stringify({ limits: { tenantConnections: 4, globalConnections: 8, idleTimeoutMs: 1000 } }));
    await broker.start(['--config', cfg]);
  });
  after(() => broker.dispose());

  test('connections held from 3 nested pid namespaces count as A\'s; status and upcall-request-key --ping still get through', async () => {
    const ready = join(broker.dir, 'ready');
    mkdirSync(ready, { mode: 0o777 });
    chmodSync(ready, 0o777);
    const hold = (i: number) => run<{ accepted: number; refused: number }>(a, ['unshare', '--pid', '--fork', '--kill-child',
      ...peerArgv(broker.tenantSocket, { mode: 'hold', connections: 4, holdMs: 4000, keepAliveMs: 300, readyFile: join(ready, String(i)) })]);
    const holders = Promise.all([0, 1, 2].map(hold));
    await until('the 3 holders to open their connections', () => readdirSync(ready).length === 3, 30_000);
    const status = await adminCode(broker, 'status');
    const ping = await promisify(execFile)(HANDLER, ['--ping', '--socket', broker.adminSocket]).then(() => 0, (e: { code?: number }) => e.code ?? -1);
    const held = await holders;
    assert.equal(status, 'ok', 'status on the admin socket');
    assert.equal(ping, 0, 'upcall-request-key --ping on the admin socket');
    assert.equal(held.reduce((n, h) => n + h.accepted, 0), 4, `one container's 4: ${JSON.stringify(held)}`);
  });

  test('half a frame, or nothing at all, is closed after the idle timeout', async () => {
    const half = await run<{ accepted: number; closedByBroker: number[] }>(a, peerArgv(broker.tenantSocket, { mode: 'hold', connections: 1, holdMs: 4000, halfFrame: true }));
    const idle = await run<{ accepted: number; closedByBroker: number[] }>(a, peerArgv(broker.tenantSocket, { mode: 'hold', connections: 1, holdMs: 4000 }));
    for (const r of [half, idle]) {
      assert.equal(r.accepted, 1);
      assert.equal(r.closedByBroker.length, 1, `closed by the broker: ${JSON.stringify(r)}`);
      assert.ok(r.closedByBroker[0]! >= 900 && r.closedByBroker[0]! < 3500, JSON.stringify(r));
    }
  });
});
