import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NS_TYPES } from '../../src/ns/kernel-constants.js';
import { sameNs } from '../../src/ns/namespace-fd.js';
import { peerCred, peerPidfd, socketFd } from '../../src/ns/peer.js';
import { Pidfd, pollExited } from '../../src/ns/pidfd.js';
import { realLibc, realSpawner } from '../helpers/native.js';
import { Testbed, type TestContainer } from '../testbed/index.js';

const libc = realLibc();
const bed = new Testbed();
let a: TestContainer;
let b: TestContainer;
let shared: TestContainer;

before(async () => {
  [a, b, shared] = await Promise.all([bed.create({ name: 'nsa' }), bed.create({ name: 'nsb' }), bed.create({ name: 'nsshared', shareHostUserns: true })]);
});
after(() => bed.dispose());

/** "user:[4026531837]" -> 4026531837, as the host sees /proc/<pid>/ns/<type>. */
function inode(pid: number | 'self', type: string): number {
  return Number(/\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/ns/${type}`))![1]);
}

describe('namespace primitives on real containers', () => {
  test('each container init has its own user and pid namespaces, different from the host and each other', () => {
    using host = Pidfd.open(libc, process.pid);
    using pa = Pidfd.open(libc, a.initPid);
    using pb = Pidfd.open(libc, b.initPid);
    for (const type of ['user', 'pid'] as const) {
      const [h, x, y] = [host, pa, pb].map((p) => {
        using ns = p.namespace(type);
        return ns.identity();
      });
      assert.ok(!sameNs(h!, x!) && !sameNs(h!, y!) && !sameNs(x!, y!), `${type} namespaces must all differ`);
      assert.equal(x!.ino, inode(a.initPid, type), `${type} identity matches /proc's view`);
    }
  });

  test('the container pid namespace is owned by the container user namespace (NS_GET_USERNS)', () => {
    using pa = Pidfd.open(libc, a.initPid);
    using pidns = pa.namespace('pid');
    using userns = pa.namespace('user');
    using owner = pidns.owner();
    assert.ok(sameNs(owner.identity(), userns.identity()));
    assert.equal(pidns.type(), 'pid');
    assert.equal(userns.type(), 'user');
    assert.equal(userns.ownerUid(), 0, 'the test (root) created the user namespace');
    using parent = pidns.parent();
    assert.ok(parent !== null);
    assert.equal(parent.identity().ino, inode('self', 'pid'), 'its parent is the host pid namespace');
  });

  test('pid 1 of a container pid namespace translates to the host pid of its init', () => {
    using pa = Pidfd.open(libc, a.initPid);
    using pidns = pa.namespace('pid');
    assert.equal(pidns.pidFromPidns(1), a.initPid);
    assert.equal(pidns.pidInPidns(a.initPid), 1);
    assert.throws(() => pidns.pidFromPidns(999_999), (e: { code?: string }) => e.code === 'E_NO_PROCESS');
  });

  test('every fd the primitives open is close-on-exec and closed exactly once', () => {
    const p = Pidfd.open(libc, a.initPid);
    const ns = p.namespace('net');
    for (const fd of [p.fd, ns.fd]) {
      const flags = Number.parseInt(/^flags:\s+(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);
      assert.ok((flags & 0o2000000) !== 0, `fd ${fd} lacks O_CLOEXEC`);
    }
    const fd = ns.fd;
    ns.close();
    ns.close(); // idempotent
    assert.throws(() => ns.fd, /after close/);
    let now = '';
    try {
      now = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      // closed and not reused: the expected case
    }
    assert.notEqual(now, `net:[${inode(a.initPid, 'net')}]`, 'the kernel fd was closed');
    p.close();
  });

  test('SO_PEERPIDFD of a client inside a container gives that client and its namespaces', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ub-peer-'));
    chmodSync(dir, 0o755);
    const path = join(dir, 'peer.sock');
    const server = createServer();
    try {
      const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
      await new Promise<void>((resolve) => server.listen(path, resolve));
      chmodSync(path, 0o666);
      const script = `const s=require('net').connect(${JSON.stringify(path)});s.on('connect',()=>setTimeout(()=>s.end(),3000));`;
      const client = await a.spawn([process.execPath, '-e', script]);
      const sock = await accepted;
      const fd = socketFd(sock);
      using pidfd = peerPidfd(libc, fd);
      const cred = peerCred(libc, fd);
      assert.equal(cred.pid, client.hostPid, 'SO_PEERCRED names the client as the host sees it');
      assert.equal(pidfd.info().pid, client.hostPid, 'the pidfd refers to the client');
      assert.equal(cred.uid, a.uidBase, 'container root is the unprivileged host uid');
      for (const type of NS_TYPES) {
        using ns = pidfd.namespace(type);
        assert.equal(ns.identity().ino, inode(a.initPid, type), `client ${type} namespace is the container's`);
      }
      assert.equal(pidfd.isAlive(), true);
      sock.destroy();
      await client.wait();
      assert.deepEqual(pollExited(libc, [pidfd.fd]), [true], 'the pidfd polls readable once the client has exited');
      assert.equal(pidfd.isAlive(), false);
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the C spawner enters exactly the target\'s namespaces', () => {
  const spawner = realSpawner();

  async function nsThroughSpawner(initPid: number): Promise<Record<string, string>> {
    using target = Pidfd.open(libc, initPid);
    const r = await spawner.run({ target, argv: ['sh', '-c', `for t in ${NS_TYPES.join(' ')}; do echo "$t $(readlink /proc/self/ns/$t)"; done`] });
    assert.equal(r.code, 0, r.stderr.toString());
    return Object.fromEntries(r.stdout.toString().trim().split('\n').map((l) => l.split(' ') as [string, string]));
  }

  for (const which of ['a container with its own user namespace', 'a container sharing the host user namespace'] as const) {
    test(`readlink /proc/self/ns/* through the spawner equals the init's namespaces: ${which}`, async () => {
      const c = which.includes('sharing') ? shared : a;
      const got = await nsThroughSpawner(c.initPid);
      for (const type of NS_TYPES) assert.equal(got[type], readlinkSync(`/proc/${c.initPid}/ns/${type}`), type);
      if (c === shared) assert.equal(got['user'], readlinkSync('/proc/self/ns/user'), 'the user namespace was left shared');
    });
  }

  test('exit status, signals and a missing program pass through with stable codes', async () => {
    using target = Pidfd.open(libc, b.initPid);
    assert.equal((await spawner.run({ target, argv: ['sh', '-c', 'exit 7'] })).code, 7);
    assert.equal((await spawner.run({ target, argv: ['sh', '-c', 'kill -9 $$'] })).code, 137);
    assert.equal((await spawner.run({ target, argv: ['/no/such/program'] })).code, 127);
    const out = await spawner.run({ target, argv: ['cat'], stdio: ['pipe', 'pipe', 'pipe'] });
    assert.equal(out.code, 0);
  });

  test('a dead target fails with E_INIT_EXITED', async () => {
    const c = await bed.create({ name: 'nsdead' });
    const target = Pidfd.open(libc, c.initPid);
    try {
      await c.stop();
      await assert.rejects(spawner.run({ target, argv: ['/bin/true'] }), (e: { code?: string }) => e.code === 'E_INIT_EXITED');
    } finally {
      target.close();
    }
  });
});

describe('the walk when the process exits half-way', () => {
  test('a process gone between its user and pid namespace lookups leaves no fd behind', async () => {
    const { NamespaceWalker } = await import('../../src/broker/namespace-walker.js');
    const { NullLoggerFactory } = await import('../../src/logging/winston-logger-factory.js');
    const { readdirSync } = await import('node:fs');
    const walker = new NamespaceWalker(libc, new NullLoggerFactory());
    /** Our own pidfd, except that the pid namespace lookup fails as it does once the process has exited. */
    class ExitsHalfway extends Pidfd {
      override namespace(kind: Parameters<Pidfd['namespace']>[0]) {
        if (kind === 'pid') throw Object.assign(new Error('ioctl(PIDFD_GET_PID_NAMESPACE): ESRCH'), { code: 'E_NO_PROCESS' });
        return super.namespace(kind);
      }
    }
    const probe = new ExitsHalfway(libc.pidfdOpen(process.pid, 0), libc, process.pid);
    try {
      const before = readdirSync('/proc/self/fd').length;
      for (let i = 0; i < 20; i++) assert.throws(() => walker.walk(probe), /ESRCH/);
      assert.equal(readdirSync('/proc/self/fd').length, before, 'every user namespace fd opened was closed');
    } finally {
      probe.close();
    }
  });
});
