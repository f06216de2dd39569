/**
 * NfsMountCache: "no NFS mount in the requester's mount namespace" from the
 * kernel (NS_MNT_GET_INFO, listmount, statmount) instead of its mountinfo. The
 * namespaces are real (this process's, and a private one made by unshare that
 * the test mounts a tmpfs in); the syscalls are the real ones, wrapped to count
 * them and, where a test says so, to report an NFS superblock or to fail.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { NFS_SUPER_MAGIC, NfsMountCache } from '../../src/broker/nfs-mount-cache.js';
import { kernelCompat } from '../../src/ns/kernel-compat.js';
import { type MountSyscalls, mountSyscalls } from '../../src/ns/mount-syscalls.js';
import { Pidfd } from '../../src/ns/pidfd.js';
import { realLibc } from '../helpers/native.js';

interface Counting extends MountSyscalls {
  lists: number;
  stats: number;
  /** Mount ids to report as NFS. */
  nfs: Set<bigint>;
  /** Every id listmount gave, last call. */
  seen: bigint[];
  failList: boolean;
  failStat: boolean;
  /** Leave the last id out of every listing (as a listing under another root would). */
  dropLast: boolean;
}

function counting(): Counting {
  const real = mountSyscalls();
  const c: Counting = {
    ...real,
    lists: 0, stats: 0, nfs: new Set(), seen: [], failList: false, failStat: false, dropLast: false,
    listmount: (nsId, afterId, out) => {
      c.lists++;
      if (c.failList) return -1;
      let n = real.listmount(nsId, afterId, out);
      if (n > 0 && c.dropLast) n--;
      c.seen = Array.from({ length: Math.max(n, 0) }, (_, i) => out.readBigUInt64LE(8 * i));
      return n;
    },
    superMagic: (mntId, nsId) => {
      c.stats++;
      if (c.failStat) return -1;
      return c.nfs.has(mntId) ? NFS_SUPER_MAGIC : real.superMagic(mntId, nsId);
    },
  };
  return c;
}

const libc = realLibc();
const supported = kernelCompat(libc).has('pidfd-ns') && kernelCompat(libc).has('statmount-ns');
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill('SIGKILL');
});

/** A shell in a private mount namespace of its own, waiting for commands on stdin. */
async function privateMntns(): Promise<{ pidfd: Pidfd; run: (cmd: string) => Promise<void> }> {
  const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'echo ready; while read -r line; do eval "$line"; echo done; done'], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  const lines: string[] = [];
  let wake: (() => void) | null = null;
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    lines.push(...d.split('\n').filter(Boolean));
    wake?.();
  });
  const next = async () => {
    while (lines.length === 0) await new Promise<void>((r) => { wake = r; });
    return lines.shift();
  };
  assert.equal(await next(), 'ready');
  return {
    pidfd: Pidfd.open(libc, child.pid!),
    run: async (cmd) => {
      child.stdin!.write(`${cmd}\n`);
      assert.equal(await next(), 'done');
    },
  };
}

if (!supported) {
  test('a kernel without PIDFD_GET_MNT_NAMESPACE or statmount/listmount in another namespace: always "maybe", no syscall made', () => {
    const sys = counting();
    using self = Pidfd.open(libc, process.pid);
    assert.equal(new NfsMountCache(libc, () => sys).mayHaveNfs(self), true);
    assert.equal(sys.lists + sys.stats, 0);
  });
}

describe('NfsMountCache', () => {
  if (!supported) return;
  test('a namespace without NFS mounts answers false; asked again, one listmount and no statmount', () => {
    const sys = counting();
    const cache = new NfsMountCache(libc, () => sys);
    using self = Pidfd.open(libc, process.pid);
    assert.equal(cache.mayHaveNfs(self), false);
    assert.ok(sys.stats > 0 && sys.stats === sys.seen.length, 'each mount asked about once');
    const stats = sys.stats;
    assert.equal(cache.mayHaveNfs(self), false);
    assert.equal(sys.lists, 2);
    assert.equal(sys.stats, stats, 'the unchanged id list keeps its answer');
  });

  test('one NFS mount anywhere in the namespace answers true (the caller reads the mountinfo)', () => {
    const sys = counting();
    const cache = new NfsMountCache(libc, () => sys);
    using self = Pidfd.open(libc, process.pid);
    assert.equal(cache.mayHaveNfs(self), false);
    sys.nfs.add(sys.seen.at(-1)!);
    assert.equal(cache.mayHaveNfs(self), false, 'same ids: the remembered answer (a mount never changes its superblock)');
    const other = new NfsMountCache(libc, () => sys);
    assert.equal(other.mayHaveNfs(self), true);
    assert.equal(other.mayHaveNfs(self), true);
  });

  test('a mount made in the namespace changes its id list: the kernel is asked again', async () => {
    const sys = counting();
    const cache = new NfsMountCache(libc, () => sys);
    const ns = await privateMntns();
    try {
      assert.equal(cache.mayHaveNfs(ns.pidfd), false);
      const before = sys.seen.length;
      await ns.run('mount -t tmpfs ub-nfs-cache-test /mnt');
      sys.nfs.clear();
      const stats = sys.stats;
      assert.equal(cache.mayHaveNfs(ns.pidfd), false);
      assert.equal(sys.seen.length, before + 1, 'the new mount is listed');
      assert.ok(sys.stats > stats, 'and asked about');
      // The new mount, reported as NFS: a new cache (the ids did not change since) says true.
      sys.nfs.add(sys.seen.at(-1)!);
      assert.equal(new NfsMountCache(libc, () => sys).mayHaveNfs(ns.pidfd), true);
      await ns.run('umount /mnt');
      sys.nfs.clear();
      assert.equal(cache.mayHaveNfs(ns.pidfd), false);
      assert.equal(sys.seen.length, before);
    } finally {
      ns.pidfd.close();
    }
  });

  test('a listing that does not cover the whole namespace, a failed listmount or statmount: "maybe", nothing remembered', () => {
    using self = Pidfd.open(libc, process.pid);
    for (const fault of ['dropLast', 'failList', 'failStat'] as const) {
      const sys = counting();
      sys[fault] = true;
      const cache = new NfsMountCache(libc, () => sys);
      assert.equal(cache.mayHaveNfs(self), true, fault);
      assert.equal(cache.size, 0, fault);
    }
  });

  test('a requester that has exited: "maybe"', async () => {
    const sys = counting();
    const cache = new NfsMountCache(libc, () => sys);
    const child = spawn('true');
    const pidfd = Pidfd.open(libc, child.pid!);
    await new Promise((r) => child.once('exit', r));
    try {
      assert.equal(cache.mayHaveNfs(pidfd), true);
    } finally {
      pidfd.close();
    }
  });
});
