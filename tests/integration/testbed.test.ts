/**
 * Proves the testbed builds real containers and tears them down: namespace
 * identities as the kernel reports them, id maps, DNS inside each container,
 * the process helpers, and that nothing survives dispose(), even after a
 * failing test. Runs as root. Never sends DNS from the host's netns.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { NS_KINDS, nsInodes, procStat, useTestbed } from '../testbed/index.js';
import type { DnsRecord, TestContainer } from '../testbed/index.js';

const NAME = 'svc.example.test';
const records = (addr: string): DnsRecord[] => [
  { name: NAME, type: 'A', address: addr, ttl: 42 },
  { name: 'v6.example.test', type: 'AAAA', address: 'fd00::7', ttl: 43 },
  { name: 'alias.example.test', type: 'CNAME', target: NAME, ttl: 44 },
  { name: '_afs3-vlserver._udp.example.test', type: 'SRV', target: 'vl.example.test', port: 7003, priority: 1, weight: 5 },
  { name: 'cell.example.test', type: 'AFSDB', subtype: 1, hostname: 'db.example.test', ttl: 45 },
  { name: 'fail.example.test', type: 'A', address: '10.0.0.99' },
];

function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** True if this netns has a socket bound to 127.0.0.1:53 (per /proc/.../net/{udp,tcp}). */
async function hasLoopbackDns(netDir: string): Promise<boolean> {
  const tables = await Promise.all(['udp', 'tcp'].map((p) => readFile(`${netDir}/${p}`, 'utf8')));
  return tables.some((t) => t.includes(' 0100007F:0035 '));
}

describe('two containers with their own namespaces and DNS', () => {
  const bed = useTestbed();
  let a: TestContainer;
  let b: TestContainer;

  test('create two containers, fast', async (t) => {
    const started = performance.now();
    [a, b] = await Promise.all([
      bed.create({ name: 'alpha', records: records('10.1.0.1'), hosts: '10.1.9.9 files-only.test', searchDomains: ['example.test'] }),
      bed.create({ name: 'beta', records: records('10.2.0.1'), hosts: '10.2.9.9 files-only.test' }),
    ]);
    const ms = performance.now() - started;
    t.diagnostic(`two containers created in parallel in ${ms.toFixed(0)} ms`);
    assert.ok(ms < 5000, `container creation took ${ms} ms`);
  });

  test('namespaces differ from the host and from each other', async () => {
    const host = await nsInodes('self');
    for (const kind of NS_KINDS) {
      assert.notEqual(a.ns[kind], host[kind], `alpha ${kind} ns is the host's`);
      assert.notEqual(b.ns[kind], host[kind], `beta ${kind} ns is the host's`);
      assert.notEqual(a.ns[kind], b.ns[kind], `alpha and beta share a ${kind} ns`);
    }
    assert.deepEqual(await nsInodes(a.initPid), a.ns);
  });

  test('container root maps to an unprivileged host range', async () => {
    for (const c of [a, b]) {
      assert.ok(c.uidBase !== null && c.uidBase >= 200_000);
      for (const map of ['uid_map', 'gid_map']) {
        const fields = (await readFile(`/proc/${c.initPid}/${map}`, 'utf8')).trim().split(/\s+/);
        assert.deepEqual(fields, ['0', String(c.uidBase), '65536'], `${c.name} ${map}`);
      }
      const status = await readFile(`/proc/${c.initPid}/status`, 'utf8');
      assert.match(status, new RegExp(`^Uid:\\t${c.uidBase}\\t`, 'm'), 'host sees init as uidBase');
      assert.equal((await c.check(['id', '-u'])).trim(), '0', 'exec runs as container root');
    }
    assert.notEqual(a.uidBase, b.uidBase);
  });

  test('init is pid 1 and hostname is per container', async () => {
    assert.match(await readFile(`/proc/${a.initPid}/status`, 'utf8'), /^NSpid:\t\d+\t1$/m, 'innermost pid is 1');
    const cmd = await a.check(['cat', '/proc/1/cmdline']);
    assert.match(cmd, /init\.js/);
    assert.equal((await a.check(['readlink', '/proc/1/exe'])).trim(), process.execPath);
    assert.equal((await a.check(['hostname'])).trim(), 'alpha');
    assert.equal((await b.check(['hostname'])).trim(), 'beta');
  });

  test('each container resolves the same name to its own address via its own server', async () => {
    for (const [c, addr] of [[a, '10.1.0.1'], [b, '10.2.0.1']] as const) {
      const before = (await c.dnsQueries()).length;
      const r = await c.queryDns(NAME);
      assert.ok(r.ok);
      assert.deepEqual(r.answers, [{ name: NAME, type: 'A', ttl: 42, data: addr }]);
      assert.equal((await c.check(['getent', 'ahostsv4', NAME])).split(/\s+/)[0], addr);
      const log = (await c.dnsQueries()).slice(before);
      assert.ok(log.some((q) => q.name === NAME && q.type === 'A' && q.proto === 'udp'), 'query logged');
    }
    // Search domains from the spec end up in resolv.conf and work through glibc.
    assert.equal((await a.check(['getent', 'ahostsv4', 'svc'])).split(/\s+/)[0], '10.1.0.1');
  });

  test('/etc/hosts is per container and consulted before DNS', async () => {
    for (const [c, addr] of [[a, '10.1.9.9'], [b, '10.2.9.9']] as const) {
      const before = (await c.dnsQueries()).length;
      assert.equal((await c.check(['getent', 'ahostsv4', 'files-only.test'])).split(/\s+/)[0], addr);
      assert.equal((await c.dnsQueries()).length, before, 'a hosts-file hit must not reach DNS');
    }
    assert.doesNotMatch(await readFile('/etc/hosts', 'utf8'), /files-only|example\.test/);
  });

  test('the host cannot reach any container DNS server', async () => {
    // Checked from kernel tables, without sending anything from the host netns.
    assert.equal(await hasLoopbackDns('/proc/self/net'), false, 'host has a 127.0.0.1:53 socket');
    assert.equal(await hasLoopbackDns(`/proc/${a.initPid}/net`), true, 'alpha has no DNS socket');
    assert.equal((await nsInodes(await a.dnsServerPid())).net, a.ns.net, 'DNS server not in the container netns');
    assert.doesNotMatch(await readFile('/etc/resolv.conf', 'utf8'), /nameserver\s+127\./);
  });

  test('record types, TTLs and NXDOMAIN', async () => {
    const answers = async (name: string, type: string): Promise<unknown> => {
      const r = await a.queryDns(name, type);
      assert.ok(r.ok, JSON.stringify(r));
      return r.answers.map(({ type: ty, ttl, data }) => ({ ty, ttl, data }));
    };
    assert.deepEqual(await answers('v6.example.test', 'AAAA'), [{ ty: 'AAAA', ttl: 43, data: 'fd00::7' }]);
    assert.deepEqual(await answers('alias.example.test', 'A'), [
      { ty: 'CNAME', ttl: 44, data: NAME },
      { ty: 'A', ttl: 42, data: '10.1.0.1' },
    ]);
    assert.deepEqual(await answers('_afs3-vlserver._udp.example.test', 'SRV'), [
      { ty: 'SRV', ttl: 300, data: { priority: 1, weight: 5, port: 7003, target: 'vl.example.test' } },
    ]);
    assert.deepEqual(await answers('cell.example.test', 'AFSDB'), [
      { ty: 'AFSDB', ttl: 45, data: { subtype: 1, hostname: 'db.example.test' } },
    ]);
    assert.deepEqual(await answers('v6.example.test', 'A'), [], 'existing name, no A: NODATA');
    const nx = await a.queryDns('nope.example.test');
    assert.ok(nx.ok && nx.rcode === 'NXDOMAIN');
  });

  test('behaviours: servfail, noanswer, truncate (TC over UDP, full over TCP), live updates', async () => {
    await b.setDns({
      behaviours: [
        { name: 'fail.example.test', kind: 'servfail' },
        { name: 'v6.example.test', kind: 'noanswer' },
        { name: NAME, kind: 'truncate' },
      ],
    });
    const fail = await b.queryDns('fail.example.test');
    assert.ok(fail.ok && fail.rcode === 'SERVFAIL');
    const silent = await b.queryDns('v6.example.test', 'AAAA', { timeoutMs: 300 });
    assert.ok(!silent.ok && /timeout/.test(silent.error));
    const tc = await b.queryDns(NAME);
    assert.ok(tc.ok && tc.truncated && tc.answers.length === 0);
    const full = await b.queryDns(NAME, 'A', { transport: 'auto' });
    assert.ok(full.ok && full.transport === 'tcp' && full.answers[0]?.data === '10.2.0.1');
    const outcomes = (await b.dnsQueries()).slice(-4).map((q) => `${q.proto}:${q.outcome}`);
    assert.deepEqual(outcomes, ['udp:dropped', 'udp:truncated', 'udp:truncated', 'tcp:NOERROR']);
    await b.setDns({ behaviours: [], records: [{ name: NAME, type: 'A', address: '10.2.0.2' }] });
    const updated = await b.queryDns(NAME);
    assert.ok(updated.ok && updated.answers[0]?.data === '10.2.0.2');
  });

  test('spawn returns the host pid of the program itself', async () => {
    const h = await a.spawn(['sleep', '30']);
    assert.deepEqual((await readFile(`/proc/${h.hostPid}/cmdline`, 'utf8')).split('\0').slice(0, 2), ['sleep', '30']);
    assert.equal(h.nsPids[0], h.hostPid);
    assert.equal(h.nsPids.length, 2);
    assert.deepEqual(await nsInodes(h.hostPid), a.ns);
    assert.equal(await h.kill('SIGTERM'), true);
    // nsenter re-raises its child's fatal signal on itself, so the signal comes through.
    assert.equal((await h.wait()).signal, 'SIGTERM');
  });

  test('exec timeout kills the program inside, not just nsenter', async () => {
    await assert.rejects(a.exec(['sleep', '30'], { timeoutMs: 200 }), /timed out/);
    // The container's /proc lists only its own pid namespace (zombies included).
    const comms = await a.check(['sh', '-c', 'cat /proc/[0-9]*/comm']);
    assert.doesNotMatch(comms, /sleep/, 'killed sleep left behind (alive or zombie)');
  });

  test('runAsInitChild: a genuine child of pid 1, with exit status and output', async () => {
    const sleeper = await a.runAsInitChild(['sleep', '30']);
    assert.equal((await procStat(sleeper.hostPid))?.ppid, a.initPid, 'host view: parent is init');
    assert.deepEqual(await nsInodes(sleeper.hostPid), a.ns);
    await sleeper.kill('SIGKILL');
    assert.equal((await sleeper.wait()).signal, 'SIGKILL');
    const h = await a.runAsInitChild(['sh', '-c', 'echo "ppid=$PPID"; echo oops >&2; exit 7']);
    assert.deepEqual(await h.wait(), { code: 7, signal: null, stdout: 'ppid=1\n', stderr: 'oops\n' });
  });

  test('nested pid namespace and child user namespace', async () => {
    const host = await nsInodes('self');
    const nested = await a.startNestedPidns();
    const nestedNs = await nsInodes(nested.hostPid);
    assert.equal(nested.nsPids.length, 3, 'host, container, nested');
    assert.equal(nested.nsPids.at(-1), 1, 'pid 1 of the nested namespace');
    assert.notEqual(nestedNs.pid, a.ns.pid);
    assert.notEqual(nestedNs.pid, host.pid);
    assert.equal(nestedNs.user, a.ns.user, 'nested pid ns is owned by the container user ns');
    assert.equal(nestedNs.net, a.ns.net);

    const child = await a.startChildUserns();
    const childNs = await nsInodes(child.hostPid);
    assert.notEqual(childNs.user, a.ns.user);
    assert.notEqual(childNs.user, host.user);
    assert.equal(childNs.pid, a.ns.pid, 'kept the container pid namespace');
    assert.equal(child.nsPids.length, 2);
    const map = (await readFile(`/proc/${child.hostPid}/uid_map`, 'utf8')).trim().split(/\s+/);
    assert.deepEqual(map, ['0', String(a.uidBase), '1'], 'child root = container root');
  });
});

test('shareHostUserns: a container owned by the host user namespace', async (t) => {
  const bed = useTestbed(t);
  const c = await bed.create({ shareHostUserns: true, records: [{ name: NAME, type: 'A', address: '10.3.0.1' }] });
  const host = await nsInodes('self');
  assert.equal(c.uidBase, null);
  assert.equal(c.ns.user, host.user);
  for (const kind of ['pid', 'mnt', 'net', 'uts', 'ipc'] as const) assert.notEqual(c.ns[kind], host[kind], kind);
  assert.match(await readFile(`/proc/${c.initPid}/status`, 'utf8'), /^Uid:\t0\t/m);
  const r = await c.queryDns(NAME);
  assert.ok(r.ok && r.answers[0]?.data === '10.3.0.1');
  const nested = await c.startNestedPidns();
  assert.equal((await nsInodes(nested.hostPid)).user, host.user);
});

test('dispose leaves nothing behind, also after a failing test', async (t) => {
  let failedPid = 0;
  let failedDir = '';
  await t.test('a test that fails after creating a container', { todo: 'fails on purpose' }, async (sub) => {
    const c = await useTestbed(sub).create();
    [failedPid, failedDir] = [c.initPid, c.dir];
    assert.fail('intentional failure: its after() hook must still tear the container down');
  });
  assert.ok(failedPid > 0);
  assert.ok(gone(failedPid), 'init of the failed test survived');
  assert.equal(existsSync(failedDir), false);

  const bed = useTestbed(t);
  const started = performance.now();
  const c = await bed.create();
  t.diagnostic(`one container created in ${(performance.now() - started).toFixed(0)} ms`);
  const probes = [await c.spawn(['sleep', '60']), await c.startNestedPidns(), await c.startChildUserns()];
  const dns = await c.dnsServerPid();
  await bed.dispose();
  await bed.dispose(); // idempotent
  for (const pid of [c.initPid, dns, ...probes.map((p) => p.hostPid)]) assert.ok(gone(pid), `pid ${pid} survived`);
  assert.equal(existsSync(c.dir), false);
  assert.doesNotMatch(await readFile('/proc/self/mountinfo', 'utf8'), /upcall-testbed/);
  await assert.rejects(c.exec(['true']), /stopped/);
});
