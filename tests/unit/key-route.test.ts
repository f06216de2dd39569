import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decideRoute, requestedHost, type RouteFacts, type RouteWalk, sourceHosts } from '../../src/broker/key-route.js';

const HOST_NET = '4:4026531840';
const N1 = '4:4026532001';
const N2 = '4:4026532002';

const facts = (over: Partial<RouteFacts> = {}): RouteFacts => ({
  type: 'dns_resolver', description: 'files.ctr.test', kernelThread: false, helperContext: null,
  requesterNetns: N1, hostNetns: HOST_NET, registrations: [], contexts: [], ...over,
});

/** A walk that must not be taken. */
const noWalk = (): RouteWalk => {
  throw new Error('walked');
};
const walkTo = (w: RouteWalk) => () => w;
const HOST_WALK: RouteWalk = { contextId: 'k-host', netns: HOST_NET, host: true };

describe('decideRoute: dns_resolver and the network namespace', () => {
  test('a requester in the host\'s netns is answered as on the host, whatever its user namespace, without a walk', () => {
    const r = decideRoute(facts({ requesterNetns: HOST_NET, contexts: [{ id: 'c-1', netns: HOST_NET }] }), noWalk);
    assert.deepEqual(r, { route: 'netns-host', target: { kind: 'host' }, capExpiry: false });
  });

  test('an unreadable netns counts as the host\'s (never a container\'s answer cached who knows where)', () => {
    assert.equal(decideRoute(facts({ requesterNetns: null }), noWalk).route, 'netns-host');
  });

  test('a requester inside its own container: the walk\'s context has its netns', () => {
    const r = decideRoute(facts(), walkTo({ contextId: 'k-1', netns: N1, host: false }));
    assert.deepEqual(r, { route: 'netns-walk', target: { kind: 'walk' }, capExpiry: false });
  });

  test('an agent (host user namespace) entered into a known container\'s netns: that container', () => {
    const r = decideRoute(facts({ contexts: [{ id: 'c-1', netns: N1 }, { id: 'c-2', netns: N2 }] }), walkTo(HOST_WALK));
    assert.deepEqual(r, { route: 'netns-context', target: { kind: 'contexts', ids: ['c-1'] }, capExpiry: false });
  });

  test('several known contexts share the netns (a pod): all of them, to agree', () => {
    const r = decideRoute(facts({ contexts: [{ id: 'c-1', netns: N1 }, { id: 'c-3', netns: N1 }] }), walkTo(HOST_WALK));
    assert.deepEqual(r.target, { kind: 'contexts', ids: ['c-1', 'c-3'] });
    assert.equal(r.route, 'netns-several');
  });

  test('no known context has the netns and the walk\'s does not either: decline', () => {
    const r = decideRoute(facts({ contexts: [{ id: 'c-2', netns: N2 }] }), walkTo({ contextId: 'k-9', netns: N2, host: false }));
    assert.deepEqual(r, { route: 'netns-decline', target: { kind: 'decline' }, capExpiry: false });
  });
});

describe('decideRoute: kernel threads come first, routed by the registrations', () => {
  const regs = [
    { contextId: 'c-1', fstype: 'cifs', source: '//Files.Ctr.Test/share' },
    { contextId: 'c-2', fstype: 'nfs4', source: 'nfs.ctr.test:/export' },
    { contextId: 'c-3', fstype: 'cifs', source: '//nfs.ctr.test/other' },
  ];

  test('one context\'s registration names the host: that context, expiry capped, netns ignored', () => {
    const r = decideRoute(facts({ kernelThread: true, requesterNetns: HOST_NET, registrations: regs }), noWalk);
    assert.deepEqual(r, { route: 'kthread-registration', target: { kind: 'contexts', ids: ['c-1'] }, capExpiry: true });
  });

  test('a query-type prefix and a final dot do not matter', () => {
    const r = decideRoute(facts({ kernelThread: true, description: 'a:files.ctr.test.', registrations: regs }), noWalk);
    assert.deepEqual(r.target, { kind: 'contexts', ids: ['c-1'] });
  });

  test('several contexts: all of them (the op answers only when they agree)', () => {
    const r = decideRoute(facts({ kernelThread: true, description: 'nfs.ctr.test', registrations: regs }), noWalk);
    assert.equal(r.route, 'kthread-several');
    assert.deepEqual(r.target, { kind: 'contexts', ids: ['c-2', 'c-3'] });
  });

  test('two registrations of one context count once', () => {
    const r = decideRoute(facts({ kernelThread: true, registrations: [...regs, { contextId: 'c-1', fstype: null, source: '//files.ctr.test/b' }] }), noWalk);
    assert.equal(r.route, 'kthread-registration');
  });

  test('no registration names the host: the host', () => {
    const r = decideRoute(facts({ kernelThread: true, description: 'elsewhere.test', registrations: regs }), noWalk);
    assert.deepEqual(r, { route: 'kthread-host', target: { kind: 'host' }, capExpiry: false });
  });
});

describe('decideRoute: other cases', () => {
  test('other key types keep the requester walk, even from the host\'s netns', () => {
    assert.equal(decideRoute(facts({ type: 'user', requesterNetns: HOST_NET }), noWalk).route, 'walk');
    assert.equal(decideRoute(facts({ type: 'cifs.spnego', kernelThread: true }), noWalk).route, 'walk');
  });

  test('a mount helper the broker runs is answered in its mount\'s context, for any key type', () => {
    const r = decideRoute(facts({ type: 'cifs.spnego', helperContext: 'c-7', requesterNetns: HOST_NET }), noWalk);
    assert.deepEqual(r, { route: 'mount-helper', target: { kind: 'contexts', ids: ['c-7'] }, capExpiry: false });
  });
});

describe('sourceHosts and requestedHost', () => {
  test('each filesystem\'s source syntax', () => {
    assert.deepEqual(sourceHosts('cifs', '//files.x.test/share'), ['files.x.test']);
    assert.deepEqual(sourceHosts('smb3', '\\\\FILES\\share'), ['files']);
    assert.deepEqual(sourceHosts('nfs', 'nfs.x.test:/export/a'), ['nfs.x.test']);
    assert.deepEqual(sourceHosts('nfs4', '[2001:db8::1]:/export'), ['2001:db8::1']);
    assert.deepEqual(sourceHosts('ceph', 'mon1.x.test:6789,mon2.x.test,[2001:db8::2]:3300:/vol'), ['mon1.x.test', 'mon2.x.test', '2001:db8::2']);
    assert.deepEqual(sourceHosts('afs', '%example.org:root.cell'), ['example.org']);
    assert.deepEqual(sourceHosts('afs', '#example.org:root.cell.readonly'), ['example.org']);
  });

  test('an unknown type is read by the source\'s shape; sources that name no host give none', () => {
    assert.deepEqual(sourceHosts(null, '//h.test/s'), ['h.test']);
    assert.deepEqual(sourceHosts(null, 'h.test:/x'), ['h.test']);
    assert.deepEqual(sourceHosts('tmpfs', 'ub-a'), []);
    assert.deepEqual(sourceHosts(null, 'ub-a'), []);
    assert.deepEqual(sourceHosts('ceph', 'admin@fsid.cephfs=/'), []);
    assert.deepEqual(sourceHosts('cifs', null), []);
  });

  test('requestedHost strips the kernel\'s query-type prefixes', () => {
    assert.equal(requestedHost('afsdb:Example.ORG'), 'example.org');
    assert.equal(requestedHost('aaaa:h.test'), 'h.test');
    assert.equal(requestedHost('h.test'), 'h.test');
  });
});
