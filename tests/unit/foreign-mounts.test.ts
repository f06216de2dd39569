import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { hasForeignNfsMount, nfsMountDevices, nfsVolumeDevices } from '../../src/broker/foreign-mounts.js';
import { decideRoute, type RouteFacts, type RouteWalk } from '../../src/broker/key-route.js';

// A container's mount namespace as the VM test makes it: its own NFS mount (0:61) and the
// referral's submount (0:63), both made in its netns, and one made in the host's netns (0:70).
const MOUNTINFO = [
  '300 299 0:55 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w',
  '301 300 0:56 / /mnt rw,relatime - tmpfs ctr rw,uid=0',
  '310 301 0:61 / /mnt/nfs rw,relatime shared:12 - nfs4 nfs.r1.test:/ rw,vers=4.2,addr=10.1.0.2',
  '311 310 0:63 /share2 /mnt/nfs/ref rw,relatime - nfs4 nfs.r1.test:/share2 rw,vers=4.2,addr=10.1.0.2',
  '320 301 0:70 / /mnt/host\\040nfs rw,relatime master:3 - nfs4 10.2.0.2:/ rw,vers=4.2,addr=10.2.0.2',
  '321 301 0:71 / /mnt/fuse rw - fuse.nfs4 x rw',
  '',
].join('\n');
const VOLUMES_N1 = [
  'NV SERVER   PORT DEV          FSID                              FSC',
  'v4 0a010002  801 0:61         0:0                               no ',
  'v4 0a010002  801 0:63         c2a8e36fa0a64d39:0                no ',
  '',
].join('\n');
const VOLUMES_HOST = 'NV SERVER   PORT DEV          FSID                              FSC\nv4 0a020002  801 0:70         0:0                               no \n';

describe('foreign NFS mounts: mountinfo against the netns\'s NFS volumes', () => {
  test('the nfs and nfs4 mounts of a mountinfo, by device; a fuse subtype named nfs4 is not one', () => {
    assert.deepEqual([...nfsMountDevices(MOUNTINFO)], ['0:61', '0:63', '0:70']);
    assert.deepEqual([...nfsMountDevices('36 35 0:40 / /a rw shared:1 master:2 - nfs host:/x rw\n')], ['0:40']);
  });

  test('the volumes of a netns\'s NFS clients, by device; the header is not one', () => {
    assert.deepEqual([...nfsVolumeDevices(VOLUMES_N1)], ['0:61', '0:63']);
  });

  test('a mount that the netns\'s own clients do not serve is foreign; all served: none', () => {
    assert.equal(hasForeignNfsMount(MOUNTINFO, VOLUMES_N1), true);
    assert.equal(hasForeignNfsMount(MOUNTINFO, VOLUMES_N1 + VOLUMES_HOST), false);
    const own = MOUNTINFO.split('\n').filter((l) => !l.includes(' 0:70 ')).join('\n');
    assert.equal(hasForeignNfsMount(own, VOLUMES_N1), false);
  });

  test('NFS volumes unreadable (no nfs module in that netns\'s view): any NFS mount is foreign; none: none', () => {
    assert.equal(hasForeignNfsMount(MOUNTINFO, null), true);
    assert.equal(hasForeignNfsMount('301 300 0:56 / /mnt rw - tmpfs ctr rw\n', null), false);
  });

  test('malformed lines (a container controls its mount points, not the kernel\'s format) are skipped', () => {
    assert.equal(nfsMountDevices('garbage - nfs4\n1 2 x:y / /m rw - nfs4 h:/ rw\n1 2 0:9 / /m rw\n').size, 0);
  });
});

describe('decideRoute: a foreign NFS mount in view', () => {
  const facts = (over: Partial<RouteFacts> = {}): RouteFacts => ({
    type: 'dns_resolver', description: 'files3.r1.test', kernelThread: false, helperContext: null,
    requesterNetns: '4:4026532001', hostNetns: '4:4026531840', registrations: [], contexts: [], ...over,
  });
  const noWalk = (): RouteWalk => {
    throw new Error('walked');
  };

  test('a container\'s requester with a foreign NFS mount in view is answered as on the host, without a walk', () => {
    assert.deepEqual(decideRoute(facts({ foreignMount: true, contexts: [{ id: 'c-1', netns: '4:4026532001' }] }), noWalk),
      { route: 'netns-foreign-mount', target: { kind: 'host' }, capExpiry: false });
  });

  test('without one, its own container answers (netns-walk)', () => {
    assert.equal(decideRoute(facts({ foreignMount: false }), () => ({ contextId: 'c-1', netns: '4:4026532001', host: false })).route, 'netns-walk');
  });

  test('the rules before it still come first: a kernel thread, a mount helper, the host\'s netns', () => {
    assert.equal(decideRoute(facts({ foreignMount: true, kernelThread: true }), noWalk).route, 'kthread-host');
    assert.equal(decideRoute(facts({ foreignMount: true, helperContext: 'c-1' }), noWalk).route, 'mount-helper');
    assert.equal(decideRoute(facts({ foreignMount: true, requesterNetns: '4:4026531840' }), noWalk).route, 'netns-host');
  });
});
