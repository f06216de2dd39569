/**
 * Registry over a real StateStore on an in-memory FileSystem: what a failed
 * unregistration leaves, and persist() after restore. (A failed registration
 * is covered through a real broker: reliability-faults.test.ts, "full disk".)
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Context, ContextTable } from '../../src/broker/context-table.js';
import type { NamespaceWalker } from '../../src/broker/namespace-walker.js';
import { Registry, toInfo } from '../../src/broker/registry.js';
import { StateStore, type StoredRegistration } from '../../src/broker/state-store.js';
import type { BrokerConfig } from '../../src/common/tokens.js';
import { NullLoggerFactory } from '../../src/logging/winston-logger-factory.js';
import type { Libc } from '../../src/ns/libc.js';
import { errno, MemoryFs } from '../helpers/memory-fs.js';

const DIR = '/state';
const identity = { dev: 4, ino: 4026532001 };
const context = { id: 'c-1', refs: new Set<string>(), state: 'live', initPid: 7, initStartTime: 5, pidnsId: identity, usernsId: { dev: 4, ino: 4026531837 } } as unknown as Context;
const contexts = { unref: (ctx: Context, id: string) => ctx.refs.delete(id) } as unknown as ContextTable;

function record(n: number): StoredRegistration {
  return {
    id: `r-${n.toString(16).padStart(12, '0')}`, mountpoint: `/mnt/${n}`, mountId: n, mountIdKind: 'unique', fstype: 'tmpfs', source: null,
    mounter: { pid: 9, uid: 0, gid: 0 }, createdAt: '2026-11-27T00:00:00.000Z',
    context: { initPid: 7, initStartTime: 5, pidns: identity, userns: { dev: 4, ino: 4026531837 } },
  };
}

function on(fs: MemoryFs): { store: StateStore; registry: Registry } {
  const logs = new NullLoggerFactory();
  const store = new StateStore({ stateDir: DIR } as BrokerConfig, fs, logs);
  const clock = { now: () => Date.now(), monotonic: () => performance.now() };
  return { store, registry: new Registry({} as Libc, {} as NamespaceWalker, contexts, store, clock, logs) };
}

async function onDisk(fs: MemoryFs): Promise<string[]> {
  return (await on(fs.image()).store.load()).map((r) => r.id).sort();
}

test('restore, then persist: a snapshot without the records that were not restored; the journal it covers is gone', async () => {
  const fs = new MemoryFs();
  const [a, stale, c] = [record(1), record(2), record(3)];
  fs.files.set(`${DIR}/registrations.json`, Buffer.from(JSON.stringify({ version: 1, registrations: [a, stale] })));
  fs.files.set(`${DIR}/registrations.journal.0`, Buffer.from(`${JSON.stringify({ op: 'add', reg: c })}\n`));
  const { store, registry } = on(fs);
  assert.deepEqual((await store.load()).map((r) => r.id), [a.id, stale.id, c.id]);
  registry.restore(a, context);
  registry.restore(c, context);
  await registry.persist();
  const snap = JSON.parse(fs.text(`${DIR}/registrations.json`)) as { version: number; registrations: Array<{ id: string }> };
  assert.equal(snap.version, 2);
  assert.deepEqual(snap.registrations.map((r) => r.id), [a.id, c.id]);
  assert.deepEqual([...fs.files.keys()].filter((p) => p.includes('journal')), [`${DIR}/registrations.journal.1`]);
  assert.deepEqual(await onDisk(fs), [a.id, c.id]);
});

test('an unregistration that cannot be written: E_IO, and the registration stays, in memory and on disk; the next one works', async () => {
  const fs = new MemoryFs();
  const a = record(1);
  fs.files.set(`${DIR}/registrations.journal.0`, Buffer.from(`${JSON.stringify({ op: 'add', reg: a })}\n`));
  const { store, registry } = on(fs);
  await store.load();
  registry.restore(a, context);
  const reg = registry.find({ id: a.id })[0]!;
  fs.hook = (c) => {
    if (c.op === 'datasync') throw errno('EIO');
  };
  await assert.rejects(registry.unregister(reg), { code: 'E_IO' });
  assert.equal(registry.find({ id: a.id }).length, 1);
  assert.ok(context.refs.has(a.id), 'its context is still referenced');
  assert.deepEqual(await onDisk(fs), [a.id]);
  fs.hook = null;
  await registry.unregister(reg);
  assert.equal(registry.size, 0);
  assert.equal(context.refs.has(a.id), false);
  assert.deepEqual(await onDisk(fs), []);
});

test('restore keeps what the record had; toInfo gives the wire form, its keys in order, without the in-memory fields', async () => {
  const fs = new MemoryFs();
  const { registry } = on(fs);
  const ctx = { ...context, refs: new Set<string>(), info: () => ({ id: 'c-1', initPid: 7, pidns: identity.ino, userns: 4026531837, initStartTime: 5 }) } as unknown as Context;
  const plain = registry.restore(record(1), ctx);
  const watched = registry.restore({ ...record(2), sourceFrom: 'agent', mntns: { dev: 4, ino: 4026532100, id: '12' } }, ctx);
  assert.equal(plain.sourceFrom, undefined);
  assert.equal('mntns' in plain, false);
  assert.equal(watched.sourceFrom, 'agent');
  assert.deepEqual(watched.mntns, { dev: 4, ino: 4026532100, id: '12' });
  watched.unmounted = true;
  for (const [reg, state] of [[plain, 'live'], [watched, 'unmounted']] as const) {
    const info = toInfo(reg);
    assert.deepEqual(Object.keys(info), ['id', 'mountpoint', 'mountId', 'mountIdKind', 'fstype', 'source', 'mounter', 'createdAt', 'state', 'context']);
    assert.equal(info.state, state);
    const { context: _c, ...stored } = reg.id === plain.id ? record(1) : record(2);
    assert.deepEqual({ ...info, state: undefined, context: undefined }, { ...stored, state: undefined, context: undefined });
    assert.deepEqual(info.context, { id: 'c-1', initPid: 7, pidns: identity.ino, userns: 4026531837, initStartTime: 5 });
  }
  // What is saved again (resave) is the record it came from.
  await registry.resave(watched);
  const back = (await on(fs.image()).store.load()).find((r) => r.id === watched.id)!;
  assert.deepEqual(back, { ...record(2), sourceFrom: 'agent', mntns: { dev: 4, ino: 4026532100, id: '12' } });
});
