/**
 * Where MountWatcher looks for a mount: mountinfo(5) text, and the processes of
 * a mount namespace (found in /proc by its nsfs identity, each re-checked through
 * its pidfd, since pids and nsfs inode numbers are both reused).
 */
import { readdirSync, statSync } from 'node:fs';
import type { Libc } from '../ns/libc.js';
import { mntNsIdOf } from '../ns/mount-syscalls.js';
import { type NamespaceFd, type NsIdentity, sameNs } from '../ns/namespace-fd.js';
import { Pidfd } from '../ns/pidfd.js';
import type { StoredMntns } from './registry.js';

/** mountinfo(5) escapes space, tab, newline and backslash in paths as octal. */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The topmost mount at `mountpoint` in a mountinfo text: its legacy id, or null. */
export function mountAt(mountinfo: string, mountpoint: string): number | null {
  let found: number | null = null;
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    if (f.length > 4 && unescape(f[4]!) === mountpoint) found = Number(f[0]);
  }
  return found;
}

/** Whether the mount `legacyId` is still at `mountpoint`. */
export function stillMounted(mountinfo: string, legacyId: number, mountpoint: string): boolean {
  const prefix = `${legacyId} `;
  return mountinfo.split('\n').some((line) => line.startsWith(prefix) && unescape(line.split(' ')[4] ?? '') === mountpoint);
}

/** The nsfs identity of `p`'s mount namespace, or null once it has exited. */
export function mntnsOf(p: Pidfd): NsIdentity | null {
  try {
    using ns = p.namespace('mnt');
    return ns.identity();
  } catch {
    return null;
  }
}

export function sameMntns(a: Pidfd, b: Pidfd): boolean {
  const [i, j] = [mntnsOf(a), mntnsOf(b)];
  return i !== null && j !== null && sameNs(i, j);
}

const nsKey = (ns: NsIdentity) => `${ns.dev}:${ns.ino}`;

/** Pids by the nsfs identity of their mount namespace (one /proc scan; every use re-checks through a pidfd). */
export function mntnsIndex(): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const key = nsKey(statSync(`/proc/${name}/ns/mnt`));
      const pids = out.get(key);
      if (pids) pids.push(Number(name));
      else out.set(key, [Number(name)]);
    } catch {
      // gone meanwhile, or not ours to see
    }
  }
  return out;
}

/** Some live process in the mount namespace `ns` (from a /proc scan, re-checked through its pidfd), or null. */
export function findViewer(libc: Libc, ns: NsIdentity, index: Map<string, number[]> = mntnsIndex()): Pidfd | null {
  for (const pid of index.get(nsKey(ns)) ?? []) {
    try {
      const p = Pidfd.open(libc, pid);
      const seen = mntnsOf(p);
      if (seen !== null && sameNs(seen, ns)) return p;
      p.close();
    } catch {
      // gone meanwhile
    }
  }
  return null;
}

/** `p`'s mount namespace if its id is `nsId` (an nsfs fd, for a mark), else null. */
export function nsfdWithId(libc: Libc, p: Pidfd, nsId: bigint): NamespaceFd | null {
  try {
    const ns = p.namespace('mnt');
    if (mntNsIdOf(libc, ns.fd) === nsId) return ns;
    ns.close();
  } catch {
    // exited
  }
  return null;
}

/** The mount namespace `nsId` through a process found in it by its recorded nsfs identity, or null. */
export function nsfdInMntns(libc: Libc, rec: StoredMntns, nsId: bigint, index: Map<string, number[]>): NamespaceFd | null {
  for (const pid of index.get(nsKey(rec)) ?? []) {
    try {
      using p = Pidfd.open(libc, pid);
      const ns = nsfdWithId(libc, p, nsId);
      if (ns !== null) return ns;
    } catch {
      // gone meanwhile
    }
  }
  return null;
}

/** How many mounts sit at `mountpoint` (stacked ones included). */
export function mountsAt(mountinfo: string, mountpoint: string): number {
  return mountinfo.split('\n').filter((line) => unescape(line.split(' ')[4] ?? '') === mountpoint).length;
}
