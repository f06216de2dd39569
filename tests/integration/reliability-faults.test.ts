/**
 * Fault handling (issue 9, part 2) through a real broker's socket:
 * - the upcall zygote SIGKILLed with an upcall in flight;
 * - a hanging upcall killed with its whole process tree at its timeout;
 * - the state (snapshot and journals) on a full disk (a 64 KiB tmpfs mounted for the test);
 * - the broker SIGKILLed while registrations are in flight;
 * - a corrupt state file at start;
 * - a state file of the previous release (version 1) at start.
 * Every mount, broker and process made here is removed in after hooks, also on failure.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BrokerClient } from '../../src/client/broker-client.js';
import type { RegistrationInfo } from '../../src/common/types.js';
import { StoredRegistrationSchema, type StoredRegistration } from '../../src/broker/state-store.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { cliIn, mountTmpfs, registerIn } from '../helpers/in-container.js';
import { admin, adminCode, batchArgv, ExitWatch, pidsWithArgv, zygoteOf } from '../helpers/reliability.js';
import { until } from '../helpers/until.js';
import { Testbed, type TestContainer } from '../testbed/index.js';

const STATE_MOUNT_PREFIX = 'ub-statefs-';
const bed = new Testbed();
let c: TestContainer;

before(async () => {
  sweepStaleStateMounts();
  c = await bed.create({ name: 'flt' });
  await mountTmpfs(c, '/mnt/f');
});
after(() => bed.dispose());

/** A unique argument for `sleep`, so the test finds exactly its own processes. */
const marker = () => `${4000 + Math.floor(Math.random() * 1000)}.${randomBytes(3).readUIntBE(0, 3)}`;

/** A fresh broker for one test, disposed after it (pass or fail). */
async function brokerFor(t: { after(fn: () => Promise<void>): void }, extra: string[] = []): Promise<BrokerProcess> {
  const b = new BrokerProcess();
  t.after(() => b.dispose());
  await b.start(extra);
  return b;
}

describe('the upcall zygote dies with an upcall in flight', () => {
  test('SIGKILL: the exec fails with E_SPAWN at once, its program does not linger, the next exec runs on a new zygote', async (t) => {
    const b = await brokerFor(t);
    const reg = await registerIn(c, b.tenantSocket, '/mnt/f');
    const m = marker();
    const client = await BrokerClient.connect(b.adminSocket);
    t.after(() => client.close());
    const inFlight = client.request('exec', { mount: reg.id, argv: ['sleep', m], timeoutMs: 60_000 });
    inFlight.catch(() => undefined); // asserted below
    let programs: number[] = [];
    await until('the upcall to run', () => (programs = pidsWithArgv(['sleep', m])).length === 1);
    const zygote = zygoteOf(b.pid!);
    assert.ok(zygote, 'the broker runs a zygote');
    const watch = new ExitWatch(programs);
    t.after(() => {
      for (const p of watch.alive()) process.kill(p, 'SIGKILL');
      watch.close();
    });
    const killed = performance.now();
    process.kill(zygote, 'SIGKILL');
    await assert.rejects(inFlight, (e: { code?: string }) => e.code === 'E_SPAWN');
    // Which event ended it, not how fast: the zygote's death, long before the upcall's own 60 s timeout.
    assert.ok(performance.now() - killed < 30_000, 'failed on the zygote\'s death, not at its timeout');
    await watch.allExited(30_000);
    const again = await admin<{ code: number; stdoutBase64: string }>(b, 'exec', { mount: reg.id, argv: ['echo', 'again'] });
    assert.equal(Buffer.from(again.stdoutBase64, 'base64').toString(), 'again\n');
    const next = zygoteOf(b.pid!);
    assert.ok(next !== null && next !== zygote, 'a new zygote serves');
    assert.deepEqual(b.crashLines(), []);
  });
});

describe('the broker dies with an upcall in flight', () => {
  test('SIGKILL of the broker: the zygote sees its pipe close, kills the upcall and exits; nothing is left', async (t) => {
    const b = await brokerFor(t);
    const reg = await registerIn(c, b.tenantSocket, '/mnt/f');
    const m = marker();
    const client = await BrokerClient.connect(b.adminSocket);
    t.after(() => client.close());
    client.request('exec', { mount: reg.id, argv: ['sleep', m], timeoutMs: 60_000 }).catch(() => undefined);
    let programs: number[] = [];
    await until('the upcall to run', () => (programs = pidsWithArgv(['sleep', m])).length === 1);
    const watch = new ExitWatch([...programs, zygoteOf(b.pid!)!]);
    t.after(() => {
      for (const p of watch.alive()) process.kill(p, 'SIGKILL');
      watch.close();
    });
    assert.equal(watch.count, 2);
    await b.stop('SIGKILL');
    await watch.allExited(30_000);
  });
});

describe('a hanging upcall is killed with its whole tree at its timeout (exec op)', () => {
  test('a shell with two background children and a foreground one: E_UPCALL_TIMEOUT, then all four gone', async (t) => {
    const b = await brokerFor(t);
    const reg = await registerIn(c, b.tenantSocket, '/mnt/f');
    const [m1, m2, m3] = [marker(), marker(), marker()];
    const started = performance.now();
    const script = `sleep ${m1} & sleep ${m2} & sleep ${m3}; echo never`;
    const answer = adminCode(b, 'exec', { mount: reg.id, argv: ['sh', '-c', script], timeoutMs: 1500 });
    let tree: number[] = [];
    await until('the tree to be running', () => (tree = [m1, m2, m3].flatMap((m) => pidsWithArgv(['sleep', m]))).length === 3);
    const shells = pidsWithArgv(['sh', '-c', script]);
    const watch = new ExitWatch([...tree, ...shells]);
    t.after(() => {
      for (const p of watch.alive()) process.kill(p, 'SIGKILL');
      watch.close();
    });
    assert.equal(watch.count, 4, 'sh and its three sleeps');
    assert.equal(await answer, 'E_UPCALL_TIMEOUT');
    const took = performance.now() - started;
    assert.ok(took >= 1500 && took < 4000, `answered after ${took} ms`);
    await watch.allExited(2000);
  });

  test('a child that left the process group with setsid is killed too', async (t) => {
    const b = await brokerFor(t);
    const reg = await registerIn(c, b.tenantSocket, '/mnt/f');
    const [m1, m2] = [marker(), marker()];
    const answer = adminCode(b, 'exec', { mount: reg.id, argv: ['sh', '-c', `setsid sleep ${m1} & sleep ${m2}`], timeoutMs: 1000 });
    let tree: number[] = [];
    await until('the tree to be running', () => (tree = [m1, m2].flatMap((m) => pidsWithArgv(['sleep', m]))).length === 2);
    const watch = new ExitWatch(tree);
    t.after(() => {
      for (const p of watch.alive()) process.kill(p, 'SIGKILL');
      watch.close();
    });
    assert.equal(await answer, 'E_UPCALL_TIMEOUT');
    await watch.allExited(2000);
  });
});

// ---------------------------------------------------------------------------
// The state file

/** tmpfs mounts of earlier runs that were SIGKILLed before their after hook (pid in the name is gone). */
function sweepStaleStateMounts(): void {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mnt = line.split(' ')[4] ?? '';
    const m = new RegExp(`^/tmp/${STATE_MOUNT_PREFIX}(\\d+)-`).exec(mnt);
    if (!m || existsSync(`/proc/${m[1]}`)) continue;
    execFileSync('umount', ['-l', mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
}

/** A tmpfs of `size` at a new /tmp dir; unmounted and removed after the test. */
function smallDisk(t: { after(fn: () => void): void }, size: string): string {
  const dir = mkdtempSync(`/tmp/${STATE_MOUNT_PREFIX}${process.pid}-`);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'ub-statefs', dir]);
  t.after(() => {
    execFileSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

const STATE_FILE = /^registrations\.(json|journal\.(\d+))$/;

/**
 * The state as the broker left it, read on its own (docs/operations.md, "State"): the snapshot
 * (version 2, or 1) with every journal of its generation or later applied in order. The snapshot
 * must parse, and every whole journal line; only the newest journal may end in a torn line (a
 * crash mid-write). Returns the ids it holds.
 */
function stateIds(stateDir: string): string[] {
  return [...stateRecords(stateDir).keys()];
}

function stateRecords(stateDir: string): Map<string, StoredRegistration> {
  const names = readdirSync(stateDir);
  const ids = new Map<string, StoredRegistration>();
  let generation = 0;
  if (names.includes('registrations.json')) {
    const parsed = JSON.parse(readFileSync(join(stateDir, 'registrations.json'), 'utf8')) as { version: number; generation?: number; registrations: unknown[] };
    assert.equal(parsed.version, 2);
    generation = parsed.generation!;
    for (const r of parsed.registrations) {
      const rec = StoredRegistrationSchema.parse(r);
      ids.set(rec.id, rec);
    }
  }
  const journals = names.flatMap((n) => {
    const g = Number(STATE_FILE.exec(n)?.[2] ?? -1);
    return g >= generation ? [g] : [];
  }).sort((a, b) => a - b);
  for (const [k, g] of journals.entries()) {
    const lines = readFileSync(join(stateDir, `registrations.journal.${g}`), 'utf8').split('\n');
    const tail = lines.pop();
    assert.ok(tail === '' || k === journals.length - 1, `journal ${g}: only the newest may end in a torn line`);
    for (const line of lines) {
      const op = JSON.parse(line) as { op: string; reg?: unknown; id?: string };
      if (op.op === 'add') {
        const rec = StoredRegistrationSchema.parse(op.reg);
        ids.set(rec.id, rec);
      }
      else if (op.op === 'del' && typeof op.id === 'string') ids.delete(op.id);
      else assert.fail(`journal ${g}: not an op: ${line}`);
    }
  }
  return ids;
}

const BIG_SOURCE = 'x'.repeat(1000); // ~1.3 KB per record: a 64 KiB disk fills in a few dozen

describe('the state on a full disk', () => {
  test('registration refused with E_IO; the state parses and holds the previous state; nothing left behind; the broker recovers', async (t) => {
    const disk = smallDisk(t, '64k');
    const stateDir = join(disk, 'state');
    const b = new BrokerProcess();
    t.after(() => b.dispose());
    await b.start(['--state-dir', stateDir]);
    const acked: string[] = [];
    let refused = '';
    for (let i = 0; i < 200 && refused === ''; i++) {
      try {
        acked.push((await admin<RegistrationInfo>(b, 'register', { mountpoint: '/', source: BIG_SOURCE })).id);
      } catch (err) {
        refused = (err as { code: string }).code;
      }
    }
    assert.equal(refused, 'E_IO', `the disk filled after ${acked.length} registrations`);
    assert.ok(acked.length >= 5, `${acked.length} fitted`);
    assert.deepEqual(stateIds(stateDir).sort(), [...acked].sort(), 'the disk holds exactly the acknowledged registrations');
    assert.deepEqual((await admin<RegistrationInfo[]>(b, 'list')).map((r) => r.id).sort(), [...acked].sort(), 'the refused one is not held in memory either');
    const files = readdirSync(stateDir);
    assert.deepEqual(files.filter((f) => !STATE_FILE.test(f)), [], 'no temp file left on the full disk');
    assert.ok(files.filter((f) => f.startsWith('registrations.journal.')).length <= 2, files.join(' '));
    // Still full: more are refused the same way, the broker keeps serving.
    assert.equal(await adminCode(b, 'register', { mountpoint: '/', source: BIG_SOURCE }), 'E_IO');
    assert.equal(await adminCode(b, 'ping'), 'ok');

    // A restart on the full disk: the broker comes up and restores everything acknowledged.
    await b.stop('SIGKILL');
    await b.start(['--state-dir', stateDir]);
    assert.deepEqual((await admin<RegistrationInfo[]>(b, 'list')).map((r) => r.id).sort(), [...acked].sort());

    // Make room: unregistering works (the broker kept room for it and for a compaction), and registering works again.
    for (const id of acked.splice(0, 4)) await admin(b, 'unregister', { id });
    acked.push((await admin<RegistrationInfo>(b, 'register', { mountpoint: '/', source: BIG_SOURCE })).id);
    assert.deepEqual(stateIds(stateDir).sort(), [...acked].sort());
    assert.deepEqual(b.crashLines(), []);
  });

  test('concurrent registrations onto a nearly full disk: the state holds exactly the acknowledged ones, never a refused one', async (t) => {
    const disk = smallDisk(t, '64k');
    const stateDir = join(disk, 'state');
    const b = new BrokerProcess();
    t.after(() => b.dispose());
    await b.start(['--state-dir', stateDir]);
    const acked = new Set<string>();
    for (;;) {
      const r = await admin<RegistrationInfo>(b, 'register', { mountpoint: '/', source: BIG_SOURCE }).catch(() => null);
      if (!r) break;
      acked.add(r.id);
    }
    // Room for a few: some of the next 12 fit, the rest are refused; which ones is a race.
    for (const id of [...acked].slice(0, 3)) {
      await admin(b, 'unregister', { id });
      acked.delete(id);
    }
    const clients = await Promise.all(Array.from({ length: 4 }, () => BrokerClient.connect(b.adminSocket)));
    t.after(() => clients.forEach((x) => x.close()));
    const outcomes = await Promise.all(clients.flatMap((x) => [0, 1, 2].map(() => x.register('/', { source: BIG_SOURCE })
      .then((r) => ({ id: r.id, code: 'ok' }), (e: { code: string }) => ({ id: null, code: e.code })))));
    const codes = outcomes.map((o) => o.code);
    assert.ok(codes.includes('E_IO') && codes.includes('ok'), `some fit, some did not: ${codes.join(',')}`);
    assert.deepEqual(codes.filter((x) => x !== 'ok' && x !== 'E_IO'), []);
    for (const o of outcomes) if (o.id) acked.add(o.id);
    assert.deepEqual(stateIds(stateDir).sort(), [...acked].sort());
    await b.stop('SIGKILL');
    await b.start(['--state-dir', stateDir]);
    assert.deepEqual((await admin<RegistrationInfo[]>(b, 'list')).map((r) => r.id).sort(), [...acked].sort(), 'after a restart too');
  });
});

describe('the broker SIGKILLed mid-registration', () => {
  test('5 rounds of registrations and unregistrations (160 in flight from the host, 40 from the container) killed part-way: the state always parses, every acknowledged change holds', async (t) => {
    const b = new BrokerProcess();
    t.after(() => b.dispose());
    const acked = new Set<string>();
    const removed = new Set<string>();
    let registrations = 0;
    const killAt = [1, 15, 40, 80, 140];
    for (const [round, threshold] of killAt.entries()) {
      await b.start();
      // From inside the container too: its registrations are restored against its live init.
      const inside = c.exec(batchArgv(b.tenantSocket, { mode: 'burst', op: 'register', params: { mountpoint: '/mnt/f' }, connections: 2, perConnection: 20 }), { timeoutMs: 30_000 });
      const clients = await Promise.all(Array.from({ length: 10 }, () => BrokerClient.connect(b.adminSocket)));
      let hostAcks = 0;
      let unregistered = 0;
      let cutOff = 0;
      let killed = false;
      // 16 per connection (the per-connection in-flight limit, so none is refused E_BUSY), each
      // slot registering again as soon as it is answered: requests are always in flight, also
      // when a whole batch of them is acknowledged at once (group commit). Every 4th
      // acknowledged registration is unregistered at once: those must stay gone. After the first
      // round, the kill also waits for one unregistration to be acknowledged.
      const slot = async (x: BrokerClient): Promise<void> => {
        let pending: string | null = null;
        try {
          while (!killed) {
            const r = await x.register('/', { source: `round ${round}` });
            acked.add(r.id);
            registrations++;
            if (++hostAcks % 4 === 0) {
              pending = r.id;
              await x.unregister(r.id);
              acked.delete(r.id);
              removed.add(r.id);
              unregistered++;
              pending = null;
            }
            if (hostAcks >= threshold && (round === 0 || unregistered > 0) && !killed) {
              killed = true;
              process.kill(b.pid!, 'SIGKILL'); // mid-flight: the others are being registered and saved
            }
          }
        } catch (e) {
          assert.equal((e as { code?: string }).code, 'E_UNAVAILABLE', 'the only failure is the connection going away');
          if (pending) acked.delete(pending); // cut off while being unregistered: either outcome is right
          cutOff++;
        }
      };
      await Promise.all(clients.flatMap((x) => Array.from({ length: 16 }, () => slot(x))));
      await b.stop('SIGKILL'); // waits for its exit
      for (const x of clients) x.close();
      const r = await inside;
      for (const a of JSON.parse(r.stdout || '[]') as Array<{ ok: boolean; rid?: string }>) if (a.ok && a.rid) acked.add(a.rid);
      assert.ok(cutOff > 0, `round ${round}: killed while registrations were in flight (${hostAcks} acknowledged, ${unregistered} unregistered, ${cutOff} cut off)`);
      const onDisk = new Set(stateIds(b.stateDir));
      assert.deepEqual([...acked].filter((id) => !onDisk.has(id)), [], `round ${round}: acknowledged but not on disk`);
      assert.deepEqual([...removed].filter((id) => onDisk.has(id)), [], `round ${round}: unregistered, acknowledged, yet on disk`);
    }
    await b.start();
    const listed = new Set((await admin<RegistrationInfo[]>(b, 'list')).map((r) => r.id));
    assert.deepEqual([...acked].filter((id) => !listed.has(id)), [], 'every acknowledged registration is back after the last restart');
    assert.deepEqual([...removed].filter((id) => listed.has(id)), [], 'no acknowledged unregistration is undone');
    assert.ok(registrations >= killAt.reduce((x, y) => x + y, 0) && removed.size >= killAt.length - 1, `${registrations} host registrations acknowledged in all, ${removed.size} of them unregistered`);
  });
});

describe('a corrupt state file', () => {
  test('is kept aside for the operator, not overwritten; the broker starts empty and saves anew', async (t) => {
    const b = new BrokerProcess();
    t.after(() => b.dispose());
    mkdirSync(b.stateDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(b.stateDir, 'registrations.json'), '{"version":1,"registrations":[{"id":"r-0123');
    await b.start();
    const aside = readdirSync(b.stateDir).filter((f) => f.startsWith('registrations.json.corrupt-'));
    assert.equal(aside.length, 1, readdirSync(b.stateDir).join(' '));
    assert.equal(readFileSync(join(b.stateDir, aside[0]!), 'utf8'), '{"version":1,"registrations":[{"id":"r-0123');
    const r = await admin<RegistrationInfo>(b, 'register', { mountpoint: '/' });
    assert.deepEqual(stateIds(b.stateDir), [r.id]);
    assert.match(b.output, /state file unreadable; kept aside/);
  });
});


describe('a state file of the previous release', () => {
  test('version 1 (one JSON file, no journals) is restored, then rewritten as a version 2 snapshot', async (t) => {
    const b = await brokerFor(t);
    const ids = [(await registerIn(c, b.tenantSocket, '/mnt/f')).id, (await admin<RegistrationInfo>(b, 'register', { mountpoint: '/' })).id].sort();
    await b.stop('SIGTERM');
    const records = [...stateRecords(b.stateDir).values()];
    assert.deepEqual(records.map((r) => r.id).sort(), ids);
    for (const f of readdirSync(b.stateDir)) rmSync(join(b.stateDir, f));
    writeFileSync(join(b.stateDir, 'registrations.json'), `${JSON.stringify({ version: 1, registrations: records }, null, 1)}\n`, { mode: 0o600 });
    await b.start();
    assert.deepEqual((await admin<RegistrationInfo[]>(b, 'list')).map((r) => r.id).sort(), ids);
    const snapshot = JSON.parse(readFileSync(join(b.stateDir, 'registrations.json'), 'utf8')) as { version: number };
    assert.equal(snapshot.version, 2, 'rewritten by the compaction after restore');
    assert.deepEqual(stateIds(b.stateDir).sort(), ids);
    const added = (await admin<RegistrationInfo>(b, 'register', { mountpoint: '/' })).id;
    assert.deepEqual(stateIds(b.stateDir).sort(), [...ids, added].sort());
  });
});
