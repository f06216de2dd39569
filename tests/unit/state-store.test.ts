/**
 * StateStore (snapshot + journals, group commit, compaction) on an in-memory
 * FileSystem bound through the same inversify token the broker uses. "A crash
 * at X" is `fs.image()` taken at X: a new store on it is a restarted broker.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Container } from 'inversify';
import { StateStore, type StateStoreTuning, type StoredRegistration } from '../../src/broker/state-store.js';
import { BrokerConfig, FileSystem, LoggerFactory } from '../../src/common/tokens.js';
import { NullLoggerFactory } from '../../src/logging/winston-logger-factory.js';
import { errno, Gate, MemoryFs } from '../helpers/memory-fs.js';
import { until } from '../helpers/until.js';

const DIR = '/state';
const SNAPSHOT = `${DIR}/registrations.json`;
const journal = (gen: number) => `${DIR}/registrations.journal.${gen}`;

function storeOn(fs: MemoryFs, tuning: Partial<StateStoreTuning> = {}): { store: StateStore; logs: NullLoggerFactory } {
  const logs = new NullLoggerFactory();
  const c = new Container();
  c.bind(BrokerConfig).toConstantValue({ stateDir: DIR } as BrokerConfig);
  c.bind(FileSystem).toConstantValue(fs);
  c.bind(LoggerFactory).toConstantValue(logs);
  c.bind(StateStore).toSelf();
  const store = c.get(StateStore);
  Object.assign(store.tuning, tuning);
  return { store, logs };
}

/** A store on a new, empty MemoryFs, loaded. */
async function freshStore(tuning: Partial<StateStoreTuning> = {}): Promise<{ fs: MemoryFs; store: StateStore; logs: NullLoggerFactory }> {
  const fs = new MemoryFs();
  const { store, logs } = storeOn(fs, tuning);
  await store.load();
  return { fs, store, logs };
}

/** Hold the `nth` fdatasync (counting from 1) until the gate opens. */
function holdSync(fs: MemoryFs, nth: number): Gate {
  const gate = new Gate();
  fs.hook = async (c) => {
    if (c.op === 'datasync' && fs.count('datasync') === nth) await gate.opened;
  };
  return gate;
}

let next = 1;
function rec(source = 'src'): StoredRegistration {
  const n = next++;
  return {
    id: `r-${n.toString(16).padStart(12, '0')}`, mountpoint: `/mnt/${n}`, mountId: n, mountIdKind: 'unique', fstype: 'tmpfs', source,
    mounter: { pid: 100, uid: 0, gid: 0 }, createdAt: '2026-11-27T00:00:00.000Z',
    context: { initPid: 1, initStartTime: 5, pidns: { dev: 4, ino: 4026531836 }, userns: { dev: 4, ino: 4026531837 } },
  };
}

/** What a broker restarted on these files would hold. */
async function reloaded(fs: MemoryFs): Promise<string[]> {
  return (await storeOn(fs.image()).store.load()).map((r) => r.id).sort();
}

const sorted = (ids: string[]) => [...ids].sort();
const tick = () => new Promise((r) => setImmediate(r));

/** Every line of a journal parses; returns its ops. */
function journalOps(fs: MemoryFs, gen: number): Array<{ op: string; id?: string; reg?: { id: string } }> {
  const text = fs.text(journal(gen));
  assert.ok(text === '' || text.endsWith('\n'), `journal ${gen} ends with a whole line`);
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { op: string; id?: string; reg?: { id: string } });
}

describe('journal', () => {
  test('acknowledged adds and removes are what a restart loads; one JSON line per op; 0600 files in a 0700 directory', async () => {
    const fs = new MemoryFs();
    const { store } = storeOn(fs);
    assert.deepEqual(await store.load(), []);
    const [a, b, c] = [rec(), rec(), rec()];
    await Promise.all([store.add(a), store.add(b)]);
    await store.add(c);
    await store.remove(b.id);
    assert.deepEqual(await reloaded(fs), sorted([a.id, c.id]));
    assert.deepEqual(journalOps(fs, 0).map((o) => `${o.op} ${o.reg?.id ?? o.id}`), [`add ${a.id}`, `add ${b.id}`, `add ${c.id}`, `del ${b.id}`]);
    assert.equal(fs.files.has(SNAPSHOT), false, 'no snapshot before the first compaction');
    assert.equal(fs.modes.get(DIR), 0o700);
    assert.equal(fs.modes.get(journal(0)), 0o600);
    const again = await storeOn(fs.image()).store.load();
    assert.deepEqual(again.find((r) => r.id === a.id), a, 'records come back field for field');
  });

  test('group commit: 50 concurrent adds are one write and one fdatasync, and none is acknowledged before it', async () => {
    const { fs, store } = await freshStore();
    const gate = holdSync(fs, 1);
    let acked = 0;
    const recs = Array.from({ length: 50 }, () => rec());
    const all = recs.map((r) => store.add(r).then(() => acked++));
    await until('the fdatasync', () => fs.count('datasync') === 1);
    for (let i = 0; i < 20; i++) await tick();
    assert.equal(acked, 0, 'nothing acknowledged before its fdatasync returned');
    gate.open();
    await Promise.all(all);
    assert.equal(fs.count('write'), 1);
    assert.equal(fs.count('datasync'), 1);
    assert.deepEqual(await reloaded(fs), sorted(recs.map((r) => r.id)));
  });

  test('group commit: what arrives while a batch is being written goes in the next batch, all of it together', async () => {
    const { fs, store } = await freshStore();
    const gate = holdSync(fs, 1);
    const first = store.add(rec());
    await until('the first batch to be syncing', () => fs.count('datasync') === 1);
    const later = Array.from({ length: 30 }, () => store.add(rec()));
    const removal = store.remove('r-ffffffffffff'); // a del of an unknown id is harmless
    for (let i = 0; i < 10; i++) await tick();
    assert.equal(fs.count('write'), 1, 'the next batch waits for the running one');
    gate.open();
    await Promise.all([first, ...later, removal]);
    assert.equal(fs.count('write'), 2);
    assert.equal(fs.count('datasync'), 2);
    assert.equal(journalOps(fs, 0).length, 32);
  });

  test('a failed batch (ENOSPC part-way through its write) rejects every op in it and leaves nothing a restart would apply', async () => {
    const { fs, store } = await freshStore();
    const kept = rec();
    await store.add(kept);
    const before = fs.files.get(journal(0))!.length;
    // The write gets one whole line and part of the next onto the disk, then fails.
    fs.hook = (c) => {
      if (c.op !== 'write') return;
      fs.hook = null;
      const cut = c.data!.indexOf(0x0a) + 20;
      fs.put(c.path, c.data!.subarray(0, cut), c.offset!);
      throw errno('ENOSPC');
    };
    const batch = [rec(), rec(), rec()];
    const outcomes = await Promise.allSettled([...batch.map((r) => store.add(r)), store.remove(kept.id)]);
    assert.deepEqual(outcomes.map((o) => o.status === 'rejected' && (o.reason as { code?: string }).code), ['ENOSPC', 'ENOSPC', 'ENOSPC', 'ENOSPC']);
    assert.equal(fs.files.get(journal(0))!.length, before, 'cut back to the last good length');
    assert.deepEqual(await reloaded(fs), [kept.id], 'neither the refused adds nor the refused removal');
    const after = rec();
    await store.add(after);
    assert.deepEqual(await reloaded(fs), sorted([kept.id, after.id]));
    assert.equal(journalOps(fs, 0).length, 2);
  });

  test('a failed fdatasync whose cut fails too: the next change writes a snapshot and a new journal first; the refused ops never load', async () => {
    const { fs, store, logs } = await freshStore();
    const kept = rec();
    await store.add(kept);
    fs.hook = (c) => {
      if (c.op === 'datasync' || c.op === 'truncate') throw errno('EIO');
    };
    const refused = [rec(), rec()];
    const outcomes = await Promise.allSettled(refused.map((r) => store.add(r)));
    assert.deepEqual(outcomes.map((o) => o.status), ['rejected', 'rejected']);
    assert.ok(logs.lines.some((l) => l.level === 'error' && /cannot cut a failed batch/.test(l.message)));
    // Journal 0 now holds the refused lines whole: a restart right now would apply them (the documented limit of a failed cut).
    fs.hook = null;
    const after = rec();
    await store.add(after);
    const snapshotAt = fs.calls.findIndex((c) => c.op === 'writeFileAtomic');
    const nextWriteAt = fs.calls.findIndex((c, i) => i > snapshotAt && c.op === 'write');
    assert.ok(snapshotAt >= 0 && nextWriteAt > snapshotAt, 'the snapshot came before the next append');
    assert.equal(fs.files.has(journal(0)), false, 'the journal in doubt is gone');
    assert.deepEqual(journalOps(fs, 1).map((o) => o.reg?.id), [after.id]);
    assert.deepEqual(await reloaded(fs), sorted([kept.id, after.id]));
  });

  test('a torn tail (crash mid-write) is ignored with a warning, and the next append does not glue onto it', async () => {
    const fs = new MemoryFs();
    const first = storeOn(fs).store;
    await first.load();
    const [a, b] = [rec(), rec()];
    await first.add(a);
    await first.add(b);
    const crashed = fs.image();
    // Longer than the next line: overwriting it in place would leave some of it behind.
    crashed.put(journal(0), Buffer.from(`{"op":"add","reg":{"id":"r-0000","source":"${'x'.repeat(2000)}`), crashed.files.get(journal(0))!.length);
    const { store, logs } = storeOn(crashed);
    assert.deepEqual((await store.load()).map((r) => r.id), [a.id, b.id]);
    assert.ok(logs.lines.some((l) => l.level === 'warn' && /torn line/.test(l.message)), JSON.stringify(logs.lines));
    const c = rec();
    await store.add(c);
    assert.deepEqual(journalOps(crashed, 0).map((o) => o.reg?.id), [a.id, b.id, c.id]);
    assert.deepEqual(await reloaded(crashed), sorted([a.id, b.id, c.id]));
  });

  test('a whole line that does not parse: the ops before it load, it and what follows are kept aside, appends go on from it', async () => {
    const fs = new MemoryFs();
    const [a, b] = [rec(), rec()];
    const line = (r: StoredRegistration) => `${JSON.stringify({ op: 'add', reg: r })}\n`;
    fs.files.set(journal(0), Buffer.from(`${line(a)}{"op":"add","reg":{"id":"bad"}}\n${line(b)}`));
    const { store, logs } = storeOn(fs);
    assert.deepEqual((await store.load()).map((r) => r.id), [a.id]);
    assert.ok(logs.lines.some((l) => l.level === 'warn' && /do not parse/.test(l.message)));
    const aside = [...fs.files.keys()].filter((p) => p.startsWith(`${journal(0)}.corrupt-`));
    assert.equal(aside.length, 1);
    assert.equal(fs.text(aside[0]!), `{"op":"add","reg":{"id":"bad"}}\n${line(b)}`);
    const c = rec();
    await store.add(c);
    assert.deepEqual(journalOps(fs, 0).map((o) => o.reg?.id), [a.id, c.id]);
  });

  test('a del of a record is idempotent, and an add of one already there replaces it', async () => {
    const fs = new MemoryFs();
    const a = rec();
    const line = (o: unknown) => `${JSON.stringify(o)}\n`;
    fs.files.set(journal(0), Buffer.from(line({ op: 'add', reg: a }) + line({ op: 'add', reg: { ...a, mountpoint: '/x' } }) + line({ op: 'del', id: 'r-00000000ffff' })));
    const loaded = await storeOn(fs).store.load();
    assert.deepEqual(loaded.map((r) => [r.id, r.mountpoint]), [[a.id, '/x']]);
  });
});

describe('compaction', () => {
  test('past max(compactMinOps, live) journal ops: a version 2 snapshot of generation 1, journal 0 removed, appends in journal 1', async () => {
    const { fs, store } = await freshStore({ compactMinOps: 5 });
    const recs = Array.from({ length: 6 }, () => rec());
    for (const r of recs) await store.add(r);
    for (let i = 0; i < 20; i++) await tick();
    assert.equal(fs.count('writeFileAtomic'), 0, 'not at 6 ops for 6 live: the journal is no bigger than a snapshot');
    await store.remove(recs[0]!.id); // 7 ops > max(5, 5 live)
    await until('the compaction', () => fs.files.has(SNAPSHOT) && !fs.files.has(journal(0)));
    const snap = JSON.parse(fs.text(SNAPSHOT)) as { version: number; generation: number; registrations: Array<{ id: string }> };
    assert.equal(snap.version, 2);
    assert.equal(snap.generation, 1);
    assert.deepEqual(snap.registrations.map((r) => r.id), recs.slice(1).map((r) => r.id));
    assert.equal(fs.modes.get(SNAPSHOT), 0o600);
    assert.deepEqual(journalOps(fs, 1), []);
    const more = rec();
    await store.add(more);
    await store.remove(recs[1]!.id);
    assert.equal(journalOps(fs, 1).length, 2);
    assert.deepEqual(await reloaded(fs), sorted([...recs.slice(2), more].map((r) => r.id)));
    // Not again until the journal is past max(5, live) ops again: 6 ops for 8 live is not.
    for (const r of Array.from({ length: 4 }, () => rec())) await store.add(r);
    for (let i = 0; i < 20; i++) await tick();
    assert.equal(fs.count('writeFileAtomic'), 1);
  });

  test('appends go on while the snapshot is written; a crash before its rename loads snapshot-less journals 0 and 1 completely', async () => {
    const { fs, store } = await freshStore({ compactMinOps: 3 });
    const gate = new Gate();
    let crash: MemoryFs | null = null;
    fs.hook = async (c) => {
      if (c.op !== 'writeFileAtomic') return;
      crash = fs.image(); // the journal switch is done, the snapshot is written but not renamed in
      await gate.opened;
    };
    const early = Array.from({ length: 4 }, () => rec());
    for (const r of early) await store.add(r);
    await store.remove(early[0]!.id); // 5 ops > max(3, 3 live)
    await until('the snapshot write', () => fs.count('writeFileAtomic') === 1);
    const late = [rec(), rec()];
    await Promise.all(late.map((r) => store.add(r))); // acknowledged while the snapshot write waits
    await store.remove(early[1]!.id);
    assert.deepEqual(journalOps(fs, 1).map((o) => o.op), ['add', 'add', 'del'], 'they went to the new journal');
    const expected = sorted([...early.slice(2), ...late].map((r) => r.id));
    assert.deepEqual(await reloaded(fs), expected, 'a crash now: journals 0 and 1, no snapshot');
    const image = crash as MemoryFs | null;
    assert.ok(image && !image.files.has(SNAPSHOT));
    assert.deepEqual(await reloaded(image), sorted(early.slice(1).map((r) => r.id)));
    gate.open();
    await until('the old journal to go', () => !fs.files.has(journal(0)));
    assert.deepEqual(await reloaded(fs), expected);
    const snap = JSON.parse(fs.text(SNAPSHOT)) as { generation: number; registrations: Array<{ id: string }> };
    assert.equal(snap.generation, 1);
    assert.deepEqual(snap.registrations.map((r) => r.id), early.slice(1).map((r) => r.id), 'the snapshot holds the state at the switch, nothing later');
  });

  test('a crash after the rename, before the old journal is removed: the old journal is not applied again', async () => {
    const { fs, store } = await freshStore();
    const [a, stale, b] = [rec(), rec(), rec()];
    for (const r of [a, stale, b]) await store.add(r);
    let crash: MemoryFs | null = null;
    fs.hook = (c) => {
      if (c.op === 'unlink' && c.path === journal(0)) crash ??= fs.image();
    };
    // A restore's compaction: `stale` is left out. Journal 0 still adds it; loading it again would bring it back.
    await store.compact((id) => id !== stale.id);
    assert.ok(crash, 'the old journal was removed after the rename');
    const image = crash as MemoryFs;
    assert.ok(image.files.has(journal(0)) && image.files.has(SNAPSHOT));
    assert.deepEqual(await reloaded(image), sorted([a.id, b.id]));
    assert.deepEqual(await reloaded(fs), sorted([a.id, b.id]));
    // The next compaction removes the leftover.
    const { store: restarted } = storeOn(image);
    await restarted.load();
    await restarted.compact();
    assert.deepEqual([...image.files.keys()].filter((p) => p.includes('journal')), [journal(1)]);
  });

  test('a compaction holds only what is on disk: not an add whose batch is failing, nor one still queued', async () => {
    const { fs, store } = await freshStore();
    const saved = rec();
    await store.add(saved);
    const gate = new Gate();
    fs.hook = async (c) => {
      if (c.op === 'datasync' && fs.count('datasync') === 2) {
        await gate.opened;
        throw errno('EIO');
      }
    };
    const failing = store.add(rec());
    await until('the failing batch to sync', () => fs.count('datasync') === 2);
    const compaction = store.compact();
    for (let i = 0; i < 5; i++) await tick(); // its journal switch waits behind the failing batch
    const queued = rec();
    const queuedAdd = store.add(queued);
    gate.open();
    await assert.rejects(failing, { code: 'EIO' });
    fs.hook = null;
    await compaction;
    await queuedAdd;
    const snap = JSON.parse(fs.text(SNAPSHOT)) as { registrations: Array<{ id: string }> };
    assert.deepEqual(snap.registrations.map((r) => r.id), [saved.id]);
    assert.deepEqual(await reloaded(fs), sorted([saved.id, queued.id]));
  });

  test('the snapshot is written in chunks with the event loop running between them', async () => {
    const { fs, store } = await freshStore({ chunkRecords: 100 });
    const recs = Array.from({ length: 1000 }, () => rec());
    await Promise.all(recs.map((r) => store.add(r)));
    let turns = 0;
    let ticking = true;
    const ticker = () => {
      turns++;
      if (ticking) setImmediate(ticker);
    };
    setImmediate(ticker);
    await store.compact();
    ticking = false;
    const call = fs.calls.find((c) => c.op === 'writeFileAtomic')!;
    assert.ok(call.chunks! >= 10, `${call.chunks} chunks`);
    assert.ok(turns >= 9, `the event loop turned ${turns} times during the compaction (10 chunks of records)`);
    assert.equal((JSON.parse(fs.text(SNAPSHOT)) as { registrations: unknown[] }).registrations.length, 1000);
  });
});

describe('upgrade and damage', () => {
  test('a version 1 file loads (malformed records dropped); the compaction after restore writes version 2; journals follow', async () => {
    const fs = new MemoryFs();
    const [a, b] = [rec(), rec()];
    fs.files.set(SNAPSHOT, Buffer.from(JSON.stringify({ version: 1, registrations: [a, { id: 'nope' }, b] }, null, 1)));
    const { store, logs } = storeOn(fs);
    assert.deepEqual((await store.load()).map((r) => r.id), [a.id, b.id]);
    assert.ok(logs.lines.some((l) => /dropping malformed state record/.test(l.message)));
    // A crash right after the upgrade started appending (before any compaction): the v1 file and journal 0 together.
    const c = rec();
    await store.add(c);
    assert.deepEqual(await reloaded(fs), sorted([a.id, b.id, c.id]));
    await store.compact((id) => id !== b.id);
    const snap = JSON.parse(fs.text(SNAPSHOT)) as { version: number; generation: number; registrations: Array<{ id: string }> };
    assert.equal(snap.version, 2);
    assert.deepEqual(snap.registrations.map((r) => r.id), [a.id, c.id]);
    assert.deepEqual(await reloaded(fs), sorted([a.id, c.id]));
  });

  test('an unreadable snapshot is kept aside; the journals are still applied; a stale temp file is removed', async () => {
    const fs = new MemoryFs();
    const a = rec();
    fs.files.set(SNAPSHOT, Buffer.from('{"version":2,"generation":3,"registrations":[{"id":"r-01'));
    fs.files.set(journal(3), Buffer.from(`${JSON.stringify({ op: 'add', reg: a })}\n`));
    fs.files.set(`${DIR}/.registrations.json.4242.tmp`, Buffer.from('half a snapshot'));
    const { store, logs } = storeOn(fs);
    assert.deepEqual((await store.load()).map((r) => r.id), [a.id]);
    assert.ok(logs.lines.some((l) => l.level === 'error' && /state file unreadable; kept aside/.test(l.message)));
    const names = [...fs.files.keys()].map((p) => p.slice(DIR.length + 1));
    assert.ok(names.some((n) => n.startsWith('registrations.json.corrupt-')), names.join(' '));
    assert.ok(!names.includes('.registrations.json.4242.tmp'));
    const b = rec();
    await store.add(b);
    assert.deepEqual(await reloaded(fs), sorted([a.id, b.id]));
  });
});

describe('a small disk', () => {
  test('adds that would leave no room for a snapshot are refused ENOSPC before anything is written; removals free room again', async () => {
    const fs = new MemoryFs();
    fs.capacity = 64 * 1024;
    const { store } = storeOn(fs);
    await store.load();
    const acked: string[] = [];
    let refusal: { code?: string } | null = null;
    while (!refusal && acked.length < 200) {
      const r = rec('x'.repeat(1000));
      const writes = fs.count('write');
      try {
        await store.add(r);
        acked.push(r.id);
      } catch (err) {
        refusal = err as { code?: string };
        assert.equal(fs.count('write'), writes, 'refused before writing');
      }
    }
    assert.equal(refusal?.code, 'ENOSPC');
    assert.ok(acked.length >= 15, `${acked.length} fitted in 64 KiB`);
    assert.deepEqual(await reloaded(fs), sorted(acked));
    // A restart on the full disk can compact: the room for it was kept.
    const { store: restarted } = storeOn(fs);
    await restarted.load();
    await restarted.compact();
    for (const id of acked.splice(0, 4)) await restarted.remove(id);
    const again = rec('x'.repeat(1000));
    await restarted.add(again);
    acked.push(again.id);
    assert.deepEqual(await reloaded(fs), sorted(acked));
    assert.ok(fs.used() <= fs.capacity);
  });
});
