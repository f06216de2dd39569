/**
 * Authorizer (docs/protocol.md, "Authorization"; docs/security.md T2): who is
 * host root, who may register and unregister, who sees which registration.
 * The peers are real processes: this test process (the broker's user
 * namespace) and a child in a user namespace of its own whose root is uid
 * 100000 outside; the namespace walk is a fake that names each peer's context.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Authorizer, notFoundError } from '../../src/broker/authorizer.js';
import type { Context } from '../../src/broker/context-table.js';
import type { NamespaceWalker } from '../../src/broker/namespace-walker.js';
import { BrokerError } from '../../src/common/errors.js';
import { NullLoggerFactory } from '../../src/logging/winston-logger-factory.js';
import type { NsIdentity } from '../../src/ns/namespace-fd.js';
import { Pidfd } from '../../src/ns/pidfd.js';
import { isHostRootPeer, type Listener, type PeerIdentity } from '../../src/server/peer-identity.js';
import { realLibc } from '../helpers/native.js';

const CONTAINER_ROOT = 100_000;
const CTX_A: NsIdentity = { dev: 4, ino: 4026532100 };
const CTX_B: NsIdentity = { dev: 4, ino: 4026532200 };

let child: ChildProcess;
let childPidfd: Pidfd;
let selfPidfd: Pidfd;
/** The broker's (this process's) user namespace. */
let brokerUserns: NsIdentity;
const pidfds: Pidfd[] = [];

before(async () => {
  const libc = realLibc();
  // sh runs once the user namespace exists: its line says so.
  child = spawn('unshare', ['--user', 'sh', '-c', 'echo ready; exec sleep 600'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = await once(child.stdout!, 'data') as [Buffer];
  assert.equal(line.toString().trim(), 'ready');
  writeFileSync(`/proc/${child.pid}/uid_map`, `0 ${CONTAINER_ROOT} 1000\n`);
  childPidfd = Pidfd.open(libc, child.pid!);
  selfPidfd = Pidfd.open(libc, process.pid);
  pidfds.push(childPidfd, selfPidfd);
  using userns = selfPidfd.namespace('user');
  brokerUserns = userns.identity();
});

after(() => {
  for (const p of pidfds) p.close();
  child?.kill('SIGKILL');
});

/** What the fake walk answers for a peer's pid: its P0, or the error the real walk would throw. */
type WalkAnswer = NsIdentity | BrokerError;

interface Setup {
  auth: Authorizer;
  logs: NullLoggerFactory;
  /** fds the walk handed out and the Authorizer has not closed. */
  open: Set<string>;
}

function authorizer(walks: (pid: number) => WalkAnswer): Setup {
  const open = new Set<string>();
  let n = 0;
  const fd = (identity: NsIdentity) => {
    const name = `fd${n++}`;
    open.add(name);
    const close = () => void open.delete(name);
    return { identity: () => identity, close, [Symbol.dispose]: close };
  };
  const walker = {
    walk: (p: Pidfd) => {
      const answer = walks(p.pid);
      if (answer instanceof BrokerError) throw answer;
      return { p0: fd(answer), userns: fd({ dev: 0, ino: 0 }), depth: 0 };
    },
  } as unknown as NamespaceWalker;
  const logs = new NullLoggerFactory();
  return { auth: new Authorizer(walker, logs), logs, open };
}

/** A peer as SocketServer's identifyPeer makes it at accept (host root from the real namespaces; sysAdmin given). */
function peer(listener: Listener, uid: number, pidfd: Pidfd, sysAdmin = false): PeerIdentity {
  const hostRoot = isHostRootPeer(listener, uid, pidfd, brokerUserns);
  return { listener, cred: { pid: pidfd.pid, uid, gid: uid }, pidfd, hostRoot, sysAdmin: !hostRoot && sysAdmin };
}

const hostRoot = () => peer('admin', 0, selfPidfd);
const contextOf = (pidnsId: NsIdentity) => ({ id: 'c', pidnsId }) as Context;
const refusals = (s: Setup) => s.logs.lines.filter((l) => l.level === 'audit' && l.message === 'refused');
const walksTo = (id: WalkAnswer) => () => id;

describe('host root', () => {
  test('is uid 0 on the admin socket in the broker\'s own user namespace, and nothing else', () => {
    const { auth } = authorizer(walksTo(CTX_A));
    assert.equal(auth.isHostRoot(hostRoot()), true);
    assert.equal(auth.isHostRoot(peer('tenant', 0, selfPidfd)), false, 'the tenant socket');
    assert.equal(auth.isHostRoot(peer('admin', 1000, selfPidfd)), false, 'another uid');
    assert.equal(auth.isHostRoot(peer('admin', 0, childPidfd)), false, 'root of another user namespace');
  });
});

describe('register', () => {
  test('host root, or a peer that held CAP_SYS_ADMIN when it connected, may register', () => {
    const { auth } = authorizer(walksTo(CTX_A));
    assert.doesNotThrow(() => auth.assertMayRegister(hostRoot()));
    assert.doesNotThrow(() => auth.assertMayRegister(peer('tenant', CONTAINER_ROOT, childPidfd, true)));
  });

  test('any other peer is refused E_PERMISSION, with an audit line', () => {
    const s = authorizer(walksTo(CTX_A));
    for (const p of [peer('tenant', CONTAINER_ROOT, childPidfd), peer('admin', 0, childPidfd), peer('tenant', 0, selfPidfd)]) {
      assert.throws(() => s.auth.assertMayRegister(p), { code: 'E_PERMISSION' });
    }
    assert.equal(refusals(s).length, 3);
    assert.deepEqual(refusals(s).map((l) => l.meta?.['op']), ['register', 'register', 'register']);
  });
});

describe('what a peer sees', () => {
  test('host root sees every context; a tenant only its own (same device and inode)', () => {
    const { auth } = authorizer(walksTo(CTX_A));
    const root = auth.viewer(hostRoot());
    assert.deepEqual(root, { hostRoot: true, contextId: null });
    assert.equal(auth.maySee(root, contextOf(CTX_B)), true);
    const tenant = auth.viewer(peer('tenant', CONTAINER_ROOT, childPidfd));
    assert.deepEqual(tenant, { hostRoot: false, contextId: CTX_A });
    assert.equal(auth.maySee(tenant, contextOf(CTX_A)), true);
    assert.equal(auth.maySee(tenant, contextOf(CTX_B)), false);
    assert.equal(auth.maySee(tenant, contextOf({ dev: 5, ino: CTX_A.ino })), false, 'the same inode on another device');
  });

  test('a peer whose pid namespace its user namespace does not own sees nothing', () => {
    const { auth } = authorizer(walksTo(new BrokerError('E_NS_NOT_OWNED', 'x')));
    const v = auth.viewer(peer('tenant', CONTAINER_ROOT, childPidfd));
    assert.deepEqual(v, { hostRoot: false, contextId: null });
    assert.equal(auth.maySee(v, contextOf(CTX_A)), false);
  });

  test('a walk that fails otherwise is an error, not an empty view', () => {
    const { auth } = authorizer(walksTo(new BrokerError('E_NO_PROCESS', 'gone')));
    assert.throws(() => auth.viewer(peer('tenant', CONTAINER_ROOT, childPidfd)), { code: 'E_NO_PROCESS' });
  });

  test('the namespace fds of the walk are closed', () => {
    const s = authorizer(walksTo(CTX_A));
    for (let i = 0; i < 3; i++) s.auth.peerContextId(peer('tenant', CONTAINER_ROOT, childPidfd));
    assert.equal(s.open.size, 0);
  });
});

describe('unregister', () => {
  const MOUNTER = CONTAINER_ROOT + 5;

  test('host root may unregister anything', () => {
    const { auth } = authorizer(walksTo(CTX_A));
    assert.doesNotThrow(() => auth.assertMayUnregister(hostRoot(), contextOf(CTX_B), MOUNTER));
  });

  test('in the peer\'s own context: the mounter and the container\'s root may, another uid is refused E_PERMISSION', () => {
    const s = authorizer(walksTo(CTX_A));
    assert.doesNotThrow(() => s.auth.assertMayUnregister(peer('tenant', MOUNTER, childPidfd), contextOf(CTX_A), MOUNTER));
    assert.doesNotThrow(() => s.auth.assertMayUnregister(peer('tenant', CONTAINER_ROOT, childPidfd), contextOf(CTX_A), MOUNTER));
    assert.throws(() => s.auth.assertMayUnregister(peer('tenant', MOUNTER + 1, childPidfd), contextOf(CTX_A), MOUNTER), { code: 'E_PERMISSION' });
    // Host uid 0 on the tenant socket is not the container's root: that one is 100000.
    assert.throws(() => s.auth.assertMayUnregister(peer('tenant', 0, childPidfd), contextOf(CTX_A), MOUNTER), { code: 'E_PERMISSION' });
    assert.deepEqual(refusals(s).map((l) => l.meta?.['op']), ['unregister', 'unregister']);
  });

  test('in another context, even as its mounter: answered exactly as a registration that does not exist', () => {
    const s = authorizer(walksTo(CTX_A));
    let err: BrokerError | undefined;
    try {
      s.auth.assertMayUnregister(peer('tenant', MOUNTER, childPidfd), contextOf(CTX_B), MOUNTER);
    } catch (e) {
      err = e as BrokerError;
    }
    assert.ok(err instanceof BrokerError);
    assert.deepEqual(err.toJSON(), notFoundError().toJSON());
    assert.equal(refusals(s).length, 1);
  });
});
