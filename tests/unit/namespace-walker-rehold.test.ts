/**
 * NamespaceWalker.rehold (broker start, RegistrationRestorer): a stored
 * context is held again only if it still holds against the kernel, and every
 * refusal is a coded BrokerError (the restorer logs its message, the code says
 * why). Real pidfds of this machine's own pid namespace: its init (pid 1) and
 * this test process.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import { releaseHeld } from '../../src/broker/held-namespaces.js';
import { NamespaceWalker } from '../../src/broker/namespace-walker.js';
import { BrokerError } from '../../src/common/errors.js';
import { NullLoggerFactory } from '../../src/logging/winston-logger-factory.js';
import type { NsIdentity } from '../../src/ns/namespace-fd.js';
import { Pidfd } from '../../src/ns/pidfd.js';
import { startTimeOf } from '../../src/ns/proc-info.js';
import { realLibc } from '../helpers/native.js';

const libc = realLibc();
const walker = new NamespaceWalker(libc, new NullLoggerFactory());

/** Our pid namespace, its owner, and pid 1's start time: what a registration of a host mount stores. */
function hostContext(): { initPid: number; initStartTime: number; pidns: NsIdentity; userns: NsIdentity } {
  using self = Pidfd.open(libc, process.pid);
  using pidns = self.namespace('pid');
  using owner = pidns.owner();
  using init = Pidfd.open(libc, 1);
  return { initPid: 1, initStartTime: startTimeOf(init), pidns: pidns.identity(), userns: owner.identity() };
}

const openFds = (): number => readdirSync('/proc/self/fd').length;

/** The refusal is `code` with `message`, and every fd rehold opened is closed again. */
function assertRefused(stored: Parameters<NamespaceWalker['rehold']>[0], code: string, message: RegExp): void {
  const before = openFds();
  assert.throws(() => walker.rehold(stored), (e: unknown) => e instanceof BrokerError && e.code === code && message.test(e.message));
  assert.equal(openFds(), before, 'no fd leaked');
}

test('a context that still holds is held again: the same init, pid namespace and owner', () => {
  const stored = hostContext();
  const held = walker.rehold(stored);
  try {
    assert.equal(held.init.pid, 1);
    assert.equal(held.host, true);
    assert.equal(held.initStartTime, stored.initStartTime);
    assert.deepEqual(held.pidnsId, stored.pidns);
    assert.deepEqual(held.usernsId, stored.userns);
  } finally {
    releaseHeld(held);
  }
  assert.ok(held.init.closed && held.p0.closed && held.userns.closed);
});

test('another start time: the pid belongs to another process now (E_INIT_EXITED)', () => {
  assertRefused({ ...hostContext(), initStartTime: 1 }, 'E_INIT_EXITED', /start time differs/);
});

test('another pid namespace: E_INIT_EXITED', () => {
  // This process, not pid 1: its own namespaces are always readable to it.
  using self = Pidfd.open(libc, process.pid);
  const stored = { ...hostContext(), initPid: process.pid, initStartTime: startTimeOf(self) };
  assertRefused({ ...stored, pidns: { dev: stored.pidns.dev, ino: 1 } }, 'E_INIT_EXITED', /not in pid namespace 1 any more/);
});

test('another owner of the pid namespace: E_NS_NOT_OWNED', () => {
  assertRefused({ ...hostContext(), userns: { dev: 0, ino: 1 } }, 'E_NS_NOT_OWNED', /not user namespace 1/);
});

test('a process that is not pid 1 of its namespace is not an init: E_INIT_EXITED', () => {
  using self = Pidfd.open(libc, process.pid);
  const stored = { ...hostContext(), initPid: process.pid, initStartTime: startTimeOf(self) };
  assertRefused(stored, 'E_INIT_EXITED', /is not the init of its pid namespace/);
});
