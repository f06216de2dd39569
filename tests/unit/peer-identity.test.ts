/**
 * connectSysAdmin (src/server/peer-identity.ts): what `register` trusts as
 * the peer's CAP_SYS_ADMIN, from /proc through the ProcFs token (docs/security.md T11);
 * identifyPeer: host root decided at accept, and /proc read only for the others.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ProcFs } from '../../src/common/tokens.js';
import type { NsIdentity } from '../../src/ns/namespace-fd.js';
import type { PeerCred } from '../../src/ns/peer.js';
import type { Pidfd } from '../../src/ns/pidfd.js';
import { connectSysAdmin, identifyPeer, type Listener } from '../../src/server/peer-identity.js';

const SYS_ADMIN = (1n << 21n).toString(16).padStart(16, '0');
const status = (realUid: number, effUid: number, capEff: string) =>
  `Name:\tx\nUid:\t${realUid}\t${effUid}\t${effUid}\t${effUid}\nCapInh:\t0000000000000000\nCapEff:\t${capEff}\n`;

/** A peer whose /proc/<pid>/status is `text` (or unreadable), alive or not; `calls` records the order of reads and checks. */
function peer(text: string | null, alive = true) {
  const calls: string[] = [];
  const proc: ProcFs = {
    readText(path) {
      calls.push(`read ${path}`);
      if (text === null) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return text;
    },
  };
  const pidfd = { pid: 4321, isAlive: () => (calls.push('alive?'), alive) };
  return { proc, pidfd, calls };
}

test('CAP_SYS_ADMIN in the effective set, with the connect-time uid still effective: privileged', () => {
  const p = peer(status(1000, 1000, SYS_ADMIN));
  assert.equal(connectSysAdmin(p.pidfd, 1000, p.proc), true);
  assert.deepEqual(p.calls, ['read 4321/status', 'alive?'], 'read first, then the pidfd says the pid was still the peer');
  const all = peer(status(0, 0, '000001ffffffffff'));
  assert.equal(connectSysAdmin(all.pidfd, 0, all.proc), true);
});

test('no CAP_SYS_ADMIN: not privileged (other bits do not count)', () => {
  const p = peer(status(0, 0, (((1n << 41n) - 1n) ^ (1n << 21n)).toString(16).padStart(16, '0')));
  assert.equal(connectSysAdmin(p.pidfd, 0, p.proc), false);
});

test('a peer that exec\'d a setuid-root program after connecting (euid no longer the SO_PEERCRED uid): not privileged', () => {
  const p = peer(status(1000, 0, '000001ffffffffff'));
  assert.equal(connectSysAdmin(p.pidfd, 1000, p.proc), false);
});

test('a peer gone (pidfd dead after the read: the pid may be another process), or /proc unreadable or odd: not privileged', () => {
  const gone = peer(status(0, 0, SYS_ADMIN), false);
  assert.equal(connectSysAdmin(gone.pidfd, 0, gone.proc), false);
  const unreadable = peer(null);
  assert.equal(connectSysAdmin(unreadable.pidfd, 0, unreadable.proc), false);
  assert.deepEqual(unreadable.calls, ['read 4321/status']);
  const odd = peer('Name:\tx\n');
  assert.equal(connectSysAdmin(odd.pidfd, 0, odd.proc), false);
});

const BROKER_USERNS: NsIdentity = { dev: 4, ino: 4026531837 };
const CHILD_USERNS: NsIdentity = { dev: 4, ino: 4026532500 };

/** identifyPeer over a fake pidfd in `userns`; `calls` records /proc reads and namespace lookups. */
function accepted(listener: Listener, uid: number, userns: NsIdentity, text: string) {
  const p = peer(text);
  const pidfd = {
    ...p.pidfd,
    namespace: (kind: string) => {
      p.calls.push(`ns ${kind}`);
      return { identity: () => userns, close: () => undefined, [Symbol.dispose]: () => undefined };
    },
  } as unknown as Pidfd;
  const cred: PeerCred = { pid: 4321, uid, gid: uid };
  return { identity: identifyPeer(listener, cred, pidfd, BROKER_USERNS, p.proc), calls: p.calls };
}

test('identifyPeer: uid 0 of the broker\'s user namespace on the admin socket is host root, and its /proc is not read', () => {
  const root = accepted('admin', 0, BROKER_USERNS, status(0, 0, SYS_ADMIN));
  assert.deepEqual([root.identity.hostRoot, root.identity.sysAdmin], [true, false]);
  assert.deepEqual(root.calls, ['ns user']);
});

test('identifyPeer: everyone else is not host root, and CAP_SYS_ADMIN comes from /proc at accept', () => {
  for (const [listener, uid, userns] of [['tenant', 0, BROKER_USERNS], ['admin', 1000, BROKER_USERNS], ['admin', 0, CHILD_USERNS]] as const) {
    const p = accepted(listener, uid, userns, status(uid, uid, SYS_ADMIN));
    assert.deepEqual([p.identity.hostRoot, p.identity.sysAdmin], [false, true], `${listener} uid ${uid}`);
    assert.ok(p.calls.includes('read 4321/status'), `${listener} uid ${uid}: /proc read`);
  }
  const tenant = accepted('tenant', 0, BROKER_USERNS, status(0, 0, '0000000000000000'));
  assert.deepEqual(tenant.calls, ['read 4321/status', 'alive?'], 'the tenant socket: no namespace lookup, /proc read');
  assert.equal(tenant.identity.sysAdmin, false);
});
