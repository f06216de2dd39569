/**
 * KeyRouter's walk for host requesters (P0 is the broker's own pid namespace):
 * the hold of the host's context is made once and kept, never released by a
 * request; a live host registration still comes first. Real kernel: the
 * requester is this test process, which is on the host.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ContextTable } from '../../src/broker/context-table.js';
import { KeyRouter } from '../../src/broker/key-router.js';
import { MountHelperRoutes, readStat } from '../../src/broker/mount-helper-routes.js';
import { NamespaceWalker } from '../../src/broker/namespace-walker.js';
import type { Registry } from '../../src/broker/registry.js';
import { NullLoggerFactory } from '../../src/logging/winston-logger-factory.js';
import { Pidfd } from '../../src/ns/pidfd.js';
import { realLibc } from '../helpers/native.js';

const libc = realLibc();
const loggers = new NullLoggerFactory();

function router(): { router: KeyRouter; contexts: ContextTable; walker: NamespaceWalker } {
  const walker = new NamespaceWalker(libc, loggers);
  const contexts = new ContextTable(libc, loggers);
  const registry = { list: () => [] } as unknown as Registry;
  return { router: new KeyRouter(libc, walker, contexts, registry, new MountHelperRoutes()), contexts, walker };
}

test('a host requester\'s walk holds the host context once: the same context every time, never temporary', () => {
  const { router: r } = router();
  using self = Pidfd.open(libc, process.pid);
  const first = r.contextFor(self);
  const second = r.contextFor(self);
  assert.equal(first.temporary, false);
  assert.equal(second.ctx, first.ctx);
  assert.equal(first.ctx.namespaces?.host, true);
  assert.equal(first.ctx.initPid, 1, 'the host context\'s init is our pid 1');
  assert.equal(first.ctx.namespaces?.init.isAlive(), true);
  // A request routed by the walk answers in it and releases nothing.
  const routed = r.route(self, 'user', 'd', readStat(process.pid)!);
  assert.equal(routed.route.route, 'walk');
  assert.deepEqual(routed.answerers.map((h) => [h.ctx, h.temporary]), [[first.ctx, false]]);
  assert.notEqual(first.ctx.namespaces, null, 'still held');
});

test('a live host registration comes first; once it is let go, the kept hold answers again', () => {
  const { router: r, contexts, walker } = router();
  using self = Pidfd.open(libc, process.pid);
  const kept = r.contextFor(self).ctx;
  const registered = contexts.adopt(walker.hold(self));
  registered.refs.add('r-1');
  try {
    assert.equal(r.contextFor(self).ctx, registered);
  } finally {
    contexts.unref(registered, 'r-1');
  }
  assert.equal(r.contextFor(self).ctx, kept);
});
