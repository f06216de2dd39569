/**
 * The fallbacks for kernels older than the features (Linux 6.1: issue 14), run
 * on this kernel by forcing them (UB_KERNEL_COMPAT), and checked against the
 * native answers for the same processes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BrokerError } from '../../src/common/errors.js';
import type { RegistrationInfo } from '../../src/common/types.js';
import { COMPAT_FEATURE_NAMES, KERNEL_COMPAT_ENV, kernelCompat } from '../../src/ns/kernel-compat.js';
import { PIDFD_GET_NS, type PidfdNsKind } from '../../src/ns/kernel-constants.js';
import { loadLibc, type Libc } from '../../src/ns/libc.js';
import { resolveMountOf } from '../../src/ns/mount-resolver.js';
import { sameNs } from '../../src/ns/namespace-fd.js';
import { peerPidfd, peerPidfdByCred, socketFd, uptimeTicks } from '../../src/ns/peer.js';
import { Pidfd, pidOfPidfd } from '../../src/ns/pidfd.js';
import { holdsSocket, unixPeerInode } from '../../src/ns/unix-peer.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { realLibc, realSpawner, zygoteRunner } from '../helpers/native.js';
import { takePid } from '../helpers/pid-reuse.js';
import { admin } from '../helpers/reliability.js';
import { Testbed, type TestContainer } from '../testbed/index.js';
import type { ZygoteRunner } from '../../src/upcall/zygote-runner.js';
import { initPidfd } from '../helpers/init-pidfd.js';

const native = realLibc();
// Probed now, before `before` forces the fallbacks for the other libc: the native
// answers are this kernel's own (on a kernel without a feature, both take the fallback).
const nativeCompat = kernelCompat(native);
const bed = new Testbed();
const runners: ZygoteRunner[] = [];
let forced: Libc;
let a: TestContainer;
const savedEnv = process.env[KERNEL_COMPAT_ENV];

before(async () => {
  // A libc object of its own gets a KernelCompat of its own, reading the variable now.
  process.env[KERNEL_COMPAT_ENV] = 'all';
  forced = loadLibc();
  a = await bed.create({ name: 'compat' });
});
after(async () => {
  if (savedEnv === undefined) delete process.env[KERNEL_COMPAT_ENV];
  else process.env[KERNEL_COMPAT_ENV] = savedEnv;
  await Promise.all(runners.map((r) => r.stop()));
  await bed.dispose();
});

const isCode = (code: string) => (e: unknown) => e instanceof BrokerError && e.code === code;

describe('forced kernel fallbacks agree with the native features', () => {
  test('every feature is a forced fallback for the forced libc, and native for the other', () => {
    for (const f of COMPAT_FEATURE_NAMES) {
      assert.equal(kernelCompat(forced).state(f), `fallback: forced by ${KERNEL_COMPAT_ENV}`);
    }
    assert.notEqual(kernelCompat(native), kernelCompat(forced));
  });

  test('namespaces from /proc/<pid>/ns are the ones PIDFD_GET_*_NAMESPACE gives', () => {
    using viaIoctl = Pidfd.open(native, a.initPid);
    using viaProc = Pidfd.open(forced, a.initPid);
    for (const kind of Object.keys(PIDFD_GET_NS) as PidfdNsKind[]) {
      using x = viaIoctl.namespace(kind);
      using y = viaProc.namespace(kind);
      assert.ok(sameNs(x.identity(), y.identity()), `${kind} namespace differs`);
    }
  });

  test('pid and credentials from fdinfo and status; an exited process is E_NO_PROCESS', async () => {
    using self = Pidfd.open(forced, process.pid);
    const info = self.info();
    assert.equal(info.pid, process.pid);
    assert.equal(info.ppid, process.ppid);
    assert.equal(info.euid, 0);
    assert.equal(info.exitCode, null);
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    using p = Pidfd.open(forced, child.pid!);
    assert.equal(pidOfPidfd(p.fd), child.pid);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited; // reaped by Node: fdinfo now says "Pid: -1"
    assert.throws(() => p.info(), isCode('E_NO_PROCESS'));
    assert.throws(() => p.namespace('pid'), isCode('E_NO_PROCESS'));
  });

  test('pid 1 of a pid namespace found in /proc is the NS_GET_PID_FROM_PIDNS answer, with or without hints', () => {
    using init = Pidfd.open(forced, a.initPid);
    using pidns = init.namespace('pid');
    assert.equal(pidns.pidFromPidns(1), a.initPid, 'by scanning /proc');
    assert.equal(pidns.pidFromPidns(1, [a.initPid]), a.initPid, 'by a hint');
    using nativeNs = Pidfd.open(native, a.initPid).namespace('pid');
    assert.equal(nativeNs.pidFromPidns(1), a.initPid);
    assert.throws(() => pidns.pidFromPidns(4_000_000), isCode('E_NO_PROCESS'));
  });

  test('in our own pid namespace a pid is itself, as NS_GET_PID_FROM_PIDNS answers, and pid 1 is found without reading its namespaces', () => {
    using self = Pidfd.open(forced, process.pid);
    using pidns = self.namespace('pid');
    assert.equal(pidns.pidFromPidns(1), 1);
    assert.equal(pidns.pidFromPidns(process.pid), process.pid);
    assert.throws(() => pidns.pidFromPidns(4_000_000), isCode('E_NO_PROCESS'));
  });

  test('STATX_MNT_ID: the legacy mount id, as the native path reports it', () => {
    using self = Pidfd.open(forced, process.pid);
    using selfNative = Pidfd.open(native, process.pid);
    const legacy = resolveMountOf(forced, self, '/proc');
    const unique = resolveMountOf(native, selfNative, '/proc');
    assert.equal(legacy.mountIdKind, 'legacy');
    assert.equal(unique.mountIdKind, nativeCompat.has('mnt-id-unique') ? 'unique' : 'legacy');
    assert.equal(legacy.fstype, 'proc');
    assert.equal(legacy.isMountRoot, true);
  });
});

describe('SO_PEERCRED + pidfd_open + start time (no SO_PEERPIDFD)', () => {
  let dir: string;
  let server: Server;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ub-compat-'));
    server = createServer({ pauseOnConnect: true, allowHalfOpen: true });
    await new Promise<void>((r) => server.listen(join(dir, 's.sock'), r));
  });
  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A child process connects and stays (or exits at once); the accepted socket and the tick we accepted it at. */
  async function acceptFrom(stay: boolean): Promise<{ sock: Socket; acceptedAt: number; pid: number; exited: Promise<unknown> }> {
    const accepted = new Promise<{ sock: Socket; acceptedAt: number }>((resolve) => server.once('connection', (sock) => resolve({ sock, acceptedAt: uptimeTicks() })));
    const code = `const s = require('net').connect(${JSON.stringify(join(dir, 's.sock'))}); s.on('connect', () => ${stay ? 'setTimeout(() => {}, 60000)' : 'process.exit(0)'});`;
    const child = spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    const { sock, acceptedAt } = await accepted;
    if (stay) after(() => child.kill('SIGKILL'));
    return { sock, acceptedAt, pid: child.pid!, exited };
  }

  test('names the connecting process, like SO_PEERPIDFD does', async () => {
    const { sock, pid } = await acceptFrom(true);
    try {
      using viaCred = peerPidfd(forced, socketFd(sock));
      using viaKernel = peerPidfd(native, socketFd(sock));
      assert.equal(viaCred.pid, pid);
      assert.equal(viaKernel.info().pid, pid);
      using nsA = viaCred.namespace('pid');
      using nsB = viaKernel.namespace('pid');
      assert.ok(sameNs(nsA.identity(), nsB.identity()));
    } finally {
      sock.destroy();
    }
  });

  test('refuses a pid reused by a process that started after the connection was accepted', async () => {
    const { sock, acceptedAt, pid, exited } = await acceptFrom(false);
    try {
      await exited;
      await new Promise((r) => setTimeout(r, 20)); // at least one tick (10 ms) after the accept
      const holder = await takePid(pid);
      try {
        assert.throws(() => peerPidfdByCred(forced, socketFd(sock), acceptedAt), isCode('E_NO_PROCESS'));
        // Even were its start time not caught (the broker stopped before it accepted: the impostor
        // started first, as in security-hostile's T9), it does not hold the connection's other end.
        assert.throws(() => peerPidfdByCred(forced, socketFd(sock), uptimeTicks() + 1_000_000), isCode('E_NO_PROCESS'));
      } finally {
        holder.kill();
      }
    } finally {
      sock.destroy();
    }
  });

  test('sock_diag names the peer\'s socket, which the peer holds and nobody else does', async () => {
    const { sock, pid } = await acceptFrom(true);
    try {
      const peer = unixPeerInode(native, socketFd(sock));
      assert.ok(peer !== null && peer > 0);
      assert.equal(holdsSocket(pid, peer), true);
      assert.equal(holdsSocket(process.pid, peer), false, 'we hold our own end only');
    } finally {
      sock.destroy();
    }
  });
});

describe('the C programs take the same forced fallbacks', () => {
  test('the one-shot spawner enters a container with namespaces found by /proc; the variable does not reach the program', async () => {
    using init = Pidfd.open(native, a.initPid);
    const r = await realSpawner().run({ target: init, argv: ['/usr/bin/env'] });
    assert.equal(r.code, 0, r.stderr.toString());
    assert.doesNotMatch(r.stdout.toString(), new RegExp(KERNEL_COMPAT_ENV));
  });

  test('the zygote runs an upcall, reads its exit status from /proc, and says the namespaces came from /proc', async () => {
    const runner = zygoteRunner(runners);
    const startTime = Number(readFileSync(`/proc/${a.initPid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19]);
    const out = await runner.run({
      target: { initPid: a.initPid, initStartTime: startTime, pidnsIno: a.ns.pid, host: false, init: initPidfd(a.initPid) },
      mode: 'exec', argv: ['/bin/sh', '-c', 'exit 3'], timeoutMs: 10_000, outputCap: 4096,
    });
    assert.match(out.fields['namespaces'] ?? '', /found via \/proc\/<pid>\/ns/);
    assert.equal(out.code, 3, 'the testbed init does not reap: the zombie\'s field 52 gives the status');
  });

  test('an init that reaps at once: the exit status comes from the proc connector', async () => {
    // sh as pid 1 reaps every child it inherits (the testbed's node init does not)
    const holder = spawn('unshare', ['--user', '--map-root-user', '--pid', '--mount', '--net', '--fork', '--kill-child', '--mount-proc',
      'sh', '-c', 'while :; do sleep 1; done'], { stdio: 'ignore' });
    try {
      let initPid = 0;
      for (let i = 0; i < 200 && initPid === 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
        try {
          initPid = Number(readFileSync(`/proc/${holder.pid}/task/${holder.pid}/children`, 'utf8').trim().split(' ')[0]) || 0;
        } catch {
          // not yet
        }
      }
      assert.ok(initPid > 0, 'unshare started its init');
      const startTime = Number(readFileSync(`/proc/${initPid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19]);
      const pidnsIno = statSync(`/proc/${initPid}/ns/pid`).ino;
      const runner = zygoteRunner(runners);
      for (const [argv, code, signal] of [[['/bin/sh', '-c', 'exit 5'], 5, null], [['/bin/sh', '-c', 'kill -TERM $$'], null, 'SIGTERM']] as const) {
        const out = await runner.run({ target: { initPid, initStartTime: startTime, pidnsIno, host: false, init: initPidfd(initPid) }, mode: 'exec', argv, timeoutMs: 10_000, outputCap: 4096 });
        assert.deepEqual([out.code, out.signal], [code, signal], argv.join(' '));
      }
    } finally {
      holder.kill('SIGKILL'); // --kill-child: its init dies with it
    }
  });
});

describe('a broker that cannot read pid 1\'s namespaces (closed to root on some machines)', () => {
  // The broker runs in a mount namespace of its own, with an empty directory over /proc/1/ns:
  // the NS_GET_PID_FROM_PIDNS fallback must not need them (the restore of a host registration
  // asks it for pid 1 of the broker's own pid namespace).
  const hidden = [`${KERNEL_COMPAT_ENV}=all`, 'unshare', '--mount', '--propagation', 'private', '--',
    'sh', '-c', 'mount -t tmpfs -o size=4k,mode=0 ub-hide /proc/1/ns && exec "$@"', 'sh'];

  test('restores a host registration after a restart', async (t) => {
    const b = new BrokerProcess();
    t.after(() => b.dispose());
    await b.start([], ['env', ...hidden]);
    assert.match(readFileSync(`/proc/${b.pid}/mountinfo`, 'utf8'), / \/proc\/1\/ns .* ub-hide /, 'pid 1\'s namespaces are hidden from the broker');
    const reg = await admin<RegistrationInfo>(b, 'register', { mountpoint: '/' });
    await b.stop('SIGKILL');
    await b.start([], ['env', ...hidden]);
    assert.deepEqual((await admin<RegistrationInfo[]>(b, 'list')).map((r) => r.id), [reg.id]);
    assert.doesNotMatch(b.output, /dropped stale registration/);
  });
});
