/**
 * Limits and fairness (issue 9, part 1), on a real broker and real containers:
 * every limit of src/server/limits.ts, set small through the config file's
 * `limits` object, refuses the request over it with E_BUSY *at once* (timed:
 * never queued behind the slow requests that hold the slots), and one
 * container flooding the broker (DNS upcalls that never get an answer, slow
 * exec upcalls) does not starve another container's requests.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { BrokerClient } from '../../src/client/broker-client.js';
import type { RegistrationInfo } from '../../src/common/types.js';
import { FrameDecoder } from '../../src/server/framing.js';
import { summary } from '../helpers/batch-client.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { cliIn, mountTmpfs } from '../helpers/in-container.js';
import { PACKAGE_ROOT } from '../../src/common/paths.js';
import { admin, adminCode, batchArgv, pidsWithArgv, VICTIM_PER_SECOND } from '../helpers/reliability.js';
import { until } from '../helpers/until.js';
import { Testbed, type TestContainer } from '../testbed/index.js';

/** Small limits, so a test reaches each one with a handful of requests. */
const LIMITS = {
  globalInFlight: 8,
  globalConnections: 10,
  tenantInFlight: 6,
  tenantConnections: 5,
  connectionInFlight: 4,
  messagesPerSecond: 200,
  messageBurst: 40,
  maxMessageBytes: 4096,
  // Per-context upcall slots are tested on the broker with the defaults (16), below.
  contextUpcalls: 64,
};
const HOSTILE_PEER = join(PACKAGE_ROOT, 'dist', 'tests', 'integration', 'reliability-hostile-peer.js');
/** An E_BUSY must come back in this long: "at once", against ~1000 ms for an admitted slow request. */
const AT_ONCE_MS = 150;

const broker = new BrokerProcess();
const bed = new Testbed();
let a: TestContainer;
let b: TestContainer;
const reg = new Map<TestContainer, RegistrationInfo>();

interface Answer { ok: boolean; code?: string; ms: number; at?: number; conn?: number }

/** Run the batch client inside a container against the tenant socket. */
async function inside<T>(c: TestContainer, spec: unknown): Promise<T> {
  const r = await c.exec(batchArgv(broker.tenantSocket, spec), { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `batch client in ${c.name}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

const slowResolve = (c: TestContainer) => ({ op: 'resolve', params: { mount: reg.get(c)!.id, description: 'slow.test' } });
const fastResolve = (c: TestContainer) => ({ op: 'resolve', params: { mount: reg.get(c)!.id, description: 'fast.test' } });

before(async () => {
  const cfg = join(broker.dir, 'limits.json');
  writeFileSync(cfg, JSON.stringify({ limits: LIMITS }));
  await broker.start(['--config', cfg]);
  const made = await Promise.all(['lima', 'limb'].map((name) => bed.create({
    name,
    records: [{ name: 'fast.test', type: 'A', address: '192.0.2.60', ttl: 60 }, { name: 'slow.test', type: 'A', address: '192.0.2.61' }],
    // slow.test is never answered: each resolve holds its slot for resolv.conf's timeout (1 s).
    dnsBehaviours: [{ name: 'slow.test', kind: 'noanswer' }],
  })));
  a = made[0]!;
  b = made[1]!;
  for (const c of [a, b]) {
    await mountTmpfs(c, '/mnt/lim');
    const r = await cliIn<RegistrationInfo>(c, ['register', '--socket', broker.tenantSocket, '--mount', '/mnt/lim']);
    assert.equal(r.code, 0, JSON.stringify(r.json));
    reg.set(c, r.json);
  }
});
after(async () => {
  try {
    await bed.dispose();
  } finally {
    await broker.dispose();
  }
});

/** The answers of a burst, split into refused (E_BUSY) and served. */
function split(answers: Answer[]) {
  const busy = answers.filter((x) => x.code === 'E_BUSY');
  const served = answers.filter((x) => x.code !== 'E_BUSY');
  return { busy, served, firstServed: Math.min(...served.map((x) => x.at!)), slowestBusy: Math.max(0, ...busy.map((x) => x.ms)) };
}

describe('an over-limit request is refused with E_BUSY at once', () => {
  test('per connection: 4 in flight, the 5th and 6th are refused before any admitted one finishes', async () => {
    const answers = await inside<Answer[]>(a, { mode: 'burst', ...slowResolve(a), connections: 1, perConnection: 6 });
    const { busy, served, firstServed, slowestBusy } = split(answers);
    assert.equal(busy.length, 2, JSON.stringify(answers));
    assert.ok(served.every((x) => x.ok && x.ms >= 800), `the admitted ones waited for DNS: ${JSON.stringify(served)}`);
    assert.ok(slowestBusy < AT_ONCE_MS, `E_BUSY took ${slowestBusy} ms`);
    assert.ok(busy.every((x) => x.at! < firstServed), 'refusals came back while the admitted requests were still running');
  });

  test('per container: 6 in flight over two connections, the rest refused at once', async () => {
    const answers = await inside<Answer[]>(a, { mode: 'burst', ...slowResolve(a), connections: 2, perConnection: 4 });
    const { busy, served, slowestBusy } = split(answers);
    // 8 sent, 4 per connection (the connection limit is not reached): the container limit (6) refuses 2.
    assert.equal(served.length, LIMITS.tenantInFlight, JSON.stringify(answers));
    assert.equal(busy.length, 2);
    assert.ok(slowestBusy < AT_ONCE_MS, `E_BUSY took ${slowestBusy} ms`);
  });

  test('connections per container: the 6th connection is answered E_BUSY and closed; the others work', async () => {
    const answers = await inside<Answer[]>(a, { mode: 'connections', count: LIMITS.tenantConnections + 1 });
    assert.deepEqual(answers.map((x) => x.ok), [true, true, true, true, true, false], JSON.stringify(answers));
    assert.equal(answers[5]!.code, 'E_BUSY');
    assert.ok(answers[5]!.ms < AT_ONCE_MS);
    // Another container is not affected by A's connections.
    const bs = await inside<Answer[]>(b, { mode: 'connections', count: LIMITS.tenantConnections });
    assert.ok(bs.every((x) => x.ok), JSON.stringify(bs));
  });

  test('message rate: one ping after another for 1 s gets the burst (40) plus 200/s, the rest E_BUSY at once', async () => {
    const r = await inside<{ counts: Record<string, number>; samples: number[] }>(a, { mode: 'series', op: 'ping', durationMs: 1000 });
    const ok = r.counts['ok'] ?? 0;
    const busy = r.counts['E_BUSY'] ?? 0;
    // 40 + 200 in the second; allow for the time the loop takes to get going.
    assert.ok(ok >= 150 && ok <= LIMITS.messageBurst + LIMITS.messagesPerSecond + 10, `${ok} served: ${JSON.stringify(r.counts)}`);
    assert.ok(busy > ok, `the rest was refused: ${JSON.stringify(r.counts)}`);
    assert.ok(Math.max(...r.samples) < AT_ONCE_MS, 'nothing waited');
    const later = await inside<Answer[]>(a, { mode: 'batch', requests: [{ op: 'ping' }] });
    assert.equal(later[0]!.ok, true, 'served again once the bucket refilled');
  });

  test('message size: a 4097-byte frame is E_PROTOCOL and the connection closes; 4096 bytes are parsed', async () => {
    const send = (bodyBytes: number) => new Promise<{ answers: Array<{ ok: boolean; error?: { code: string } }>; closed: boolean }>((resolve) => {
      const s = connect(broker.adminSocket);
      const d = new FrameDecoder(1 << 20);
      const answers: Array<{ ok: boolean; error?: { code: string } }> = [];
      const body = Buffer.alloc(bodyBytes, 0x20);
      Buffer.from('{"v":1,"id":1,"op":"ping"}').copy(body);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(bodyBytes);
      s.on('data', (c) => {
        for (const f of d.push(c)) answers.push(JSON.parse(f.toString()) as { ok: boolean });
        if (answers.length === 1) setTimeout(() => { s.destroy(); resolve({ answers, closed: false }); }, 100);
      });
      s.on('close', () => resolve({ answers, closed: true }));
      s.on('error', () => undefined);
      s.on('connect', () => s.write(Buffer.concat([head, body])));
    });
    const over = await send(LIMITS.maxMessageBytes + 1);
    assert.equal(over.closed, true);
    assert.equal(over.answers[0]?.error?.code, 'E_PROTOCOL');
    const at = await send(LIMITS.maxMessageBytes);
    assert.equal(at.closed, false);
    assert.equal(at.answers[0]?.ok, true, 'trailing spaces are valid JSON whitespace: a ping');
  });

  test('global in-flight: host root (no per-container limit) fills the 8 slots with slow upcalls; a 9th request is refused at once', async () => {
    const clients = await Promise.all([0, 1, 2].map(() => BrokerClient.connect(broker.adminSocket)));
    try {
      const second = `1.${String(process.pid).padStart(7, '0')}`; // about a second, and only ours
      const slow = clients.slice(0, 2).flatMap((c) => [0, 1, 2, 3].map(() => c.request('exec', { mount: reg.get(a)!.id, argv: ['sleep', second] })));
      await until('the 8 upcalls to run', () => pidsWithArgv(['sleep', second]).length >= 8);
      const t = performance.now();
      const code = await clients[2]!.ping().then(() => 'ok', (e: { code: string }) => e.code);
      assert.equal(code, 'E_BUSY');
      assert.ok(performance.now() - t < AT_ONCE_MS);
      await Promise.all(slow);
      assert.ok(await clients[2]!.ping(), 'served again once the slots are free');
    } finally {
      for (const c of clients) c.close();
    }
  });

  test('global connections: tenants together hold at most 10, host root 10 of its own; neither locks the other out', async () => {
    const clients: BrokerClient[] = [];
    try {
      for (let i = 0; i < LIMITS.globalConnections; i++) {
        clients.push(await BrokerClient.connect(broker.adminSocket));
        await clients.at(-1)!.ping();
      }
      const extra = await BrokerClient.connect(broker.adminSocket);
      clients.push(extra);
      await assert.rejects(extra.ping(), (e: { code?: string }) => e.code === 'E_BUSY', 'host root\'s 11th is refused');
      const answers = await inside<Answer[]>(a, { mode: 'connections', count: 1 });
      assert.equal(answers[0]!.ok, true, 'a container still connects: host root has a pool of its own');
    } finally {
      for (const c of clients) c.close();
    }
    // A and B hold 5 each: the tenants' 10. A host non-root user on the tenant socket is then refused; host root is not.
    const ready = join(broker.dir, 'ready-global');
    mkdirSync(ready, { mode: 0o777 });
    chmodSync(ready, 0o777);
    const holders = Promise.all([a, b].map((c) => c.exec([process.execPath, HOSTILE_PEER, broker.tenantSocket,
      JSON.stringify({ mode: 'hold', connections: LIMITS.tenantConnections, holdMs: 3000, keepAliveMs: 300, readyFile: join(ready, c.name) })])));
    await until('A and B to hold their connections', () => readdirSync(ready).length === 2, 30_000);
    const t = performance.now();
    const hostUser = await promisify(execFile)('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all',
      ...batchArgv(broker.tenantSocket, { mode: 'connections', count: 1 })]);
    const refused = (JSON.parse(hostUser.stdout) as Answer[])[0]!;
    assert.equal(refused.code, 'E_BUSY', 'a third tenant is refused once the tenants hold 10');
    assert.ok(performance.now() - t < 5000);
    assert.equal(await adminCode(broker, 'ping'), 'ok', 'host root still gets through');
    for (const r of await holders) assert.equal(JSON.parse(r.stdout).accepted, LIMITS.tenantConnections, r.stdout + r.stderr);
  });
});

describe('one container flooding does not starve another (default limits)', () => {
  // A second broker with the shipped defaults: fairness must hold as installed, not only when tuned.
  const fair = new BrokerProcess();
  const fairReg = new Map<TestContainer, string>();
  before(async () => {
    await fair.start();
    for (const c of [a, b]) {
      const r = await cliIn<RegistrationInfo>(c, ['register', '--socket', fair.tenantSocket, '--mount', '/mnt/lim']);
      assert.equal(r.code, 0, JSON.stringify(r.json));
      fairReg.set(c, r.json.id);
    }
  });
  after(() => fair.dispose());

  async function insideFair<T>(c: TestContainer, spec: unknown): Promise<T> {
    const r = await c.exec(batchArgv(fair.tenantSocket, spec), { timeoutMs: 60_000 });
    assert.equal(r.code, 0, `batch client in ${c.name}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }
  type Series = { counts: Record<string, number>; ms: ReturnType<typeof summary> };

  test('per context upcalls: 20 exec upcalls at once into A from host root, 16 run and 4 are refused at once; B still runs', async () => {
    const clients = await Promise.all([0, 1].map(() => BrokerClient.connect(fair.adminSocket)));
    try {
      const started = performance.now();
      const slow = clients.flatMap((c) => Array.from({ length: 10 }, () => c.request('exec', { mount: fairReg.get(a)!, argv: ['sleep', '1'] })
        .then(() => ({ code: 'ok', ms: performance.now() - started }), (e: { code: string }) => ({ code: e.code, ms: performance.now() - started }))));
      const other = await admin<{ code: number }>(fair, 'exec', { mount: fairReg.get(b)!, argv: ['true'] });
      const otherMs = performance.now() - started;
      const outcomes = await Promise.all(slow);
      assert.equal(outcomes.filter((o) => o.code === 'ok').length, 16, JSON.stringify(outcomes));
      const busy = outcomes.filter((o) => o.code === 'E_BUSY');
      assert.equal(busy.length, 4);
      assert.ok(busy.every((o) => o.ms < AT_ONCE_MS), JSON.stringify(busy));
      assert.equal(other.code, 0, 'another container\'s upcall ran meanwhile');
      assert.ok(otherMs < 800, `and did not wait for the slow ones (${otherMs} ms)`);
    } finally {
      for (const c of clients) c.close();
    }
  });

  test('DNS upcalls: A keeps 8 connections x 16 never-answered lookups going; B\'s lookups keep their latency', async () => {
    const fast = { op: 'resolve', params: { mount: fairReg.get(b)!, description: 'fast.test' }, perSecond: VICTIM_PER_SECOND };
    const slow = { op: 'resolve', params: { mount: fairReg.get(a)!, description: 'slow.test' } };
    const baseline = await insideFair<Series>(b, { mode: 'series', ...fast, durationMs: 1500 });
    const [flood, during] = await Promise.all([
      insideFair<{ counts: Record<string, number> }>(a, { mode: 'flood', ...slow, connections: 8, inFlight: 16, durationMs: 6000 }),
      insideFair<Series>(b, { mode: 'series', ...fast, durationMs: 4000, startAfterMs: 1000 }),
    ]);
    assert.ok((flood.counts['E_BUSY'] ?? 0) > 0, `A was held to its limits: ${JSON.stringify(flood.counts)}`);
    assert.deepEqual(Object.keys(during.counts), ['ok'], `B was never refused: ${JSON.stringify(during.counts)}`);
    const bound = Math.max(250, 5 * baseline.ms.p99);
    assert.ok(during.ms.p99 < bound, `B's p99 ${during.ms.p99} ms under the flood (baseline ${JSON.stringify(baseline.ms)}, bound ${bound} ms)`);
    assert.ok(during.ms.n >= 20, `B was served steadily: ${during.ms.n} lookups in 4 s`);
  });

  test('exec upcalls: host root keeps 6 connections x 16 slow programs going in A; B\'s upcalls keep their latency', async () => {
    const floodClients = await Promise.all(Array.from({ length: 6 }, () => BrokerClient.connect(fair.adminSocket)));
    const victim = await BrokerClient.connect(fair.adminSocket);
    const counts: Record<string, number> = {};
    let running = true;
    const loop = async (c: BrokerClient): Promise<void> => {
      while (running) {
        const code = await c.request('exec', { mount: fairReg.get(a)!, argv: ['sleep', '0.5'] }).then(() => 'ok', (e: { code: string }) => e.code);
        counts[code] = (counts[code] ?? 0) + 1;
        if (code === 'E_BUSY') await new Promise((r) => setTimeout(r, 5));
      }
    };
    try {
      const baseline: number[] = [];
      for (let i = 0; i < 30; i++) {
        const t = performance.now();
        await victim.request('exec', { mount: fairReg.get(b)!, argv: ['true'] });
        baseline.push(performance.now() - t);
      }
      const floods = floodClients.flatMap((c) => Array.from({ length: 16 }, () => loop(c)));
      await new Promise((r) => setTimeout(r, 700)); // let the flood reach its limit first
      const ms: number[] = [];
      const victimCodes: Record<string, number> = {};
      const end = performance.now() + 3000;
      while (performance.now() < end) {
        const t = performance.now();
        const code = await victim.request('exec', { mount: fairReg.get(b)!, argv: ['true'] }).then(() => 'ok', (e: { code: string }) => e.code);
        victimCodes[code] = (victimCodes[code] ?? 0) + 1;
        ms.push(performance.now() - t);
      }
      running = false;
      await Promise.all(floods);
      const s = summary(ms);
      const base = summary(baseline);
      assert.deepEqual(Object.keys(victimCodes), ['ok'], `B was never refused: ${JSON.stringify(victimCodes)}`);
      const bound = Math.max(250, 5 * base.p99);
      assert.ok(s.p99 < bound, `B's exec p99 ${s.p99} ms while A's flood ran (baseline ${JSON.stringify(base)}, under flood ${JSON.stringify(s)})`);
      assert.ok((counts['E_BUSY'] ?? 0) > 0 && (counts['ok'] ?? 0) > 0, `A was held to its limit: ${JSON.stringify(counts)}`);
    } finally {
      running = false;
      for (const c of [...floodClients, victim]) c.close();
    }
  });
});
