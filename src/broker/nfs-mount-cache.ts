/**
 * Does a requester's mount namespace hold any NFS mount at all? Most never do,
 * and then the netns rule's foreign-mount check (foreign-mounts.ts) is decided
 * without reading the requester's mountinfo: from the namespace's 64-bit id
 * (NS_MNT_GET_INFO, never reused), its mounts' unique ids (listmount(2), never
 * reused since Linux 6.8) and, when that list changed, each new list's
 * superblock magics (statmount(2)). A mount's superblock never changes, so an
 * unchanged id list keeps its answer; any change asks the kernel again.
 *
 * Exact, not an approximation: "no NFS mount in the namespace" implies none in
 * the requester's mountinfo, which shows a subset of the namespace's mounts (the
 * ones under its root). Anything else (some NFS mount somewhere, a listing
 * that does not cover the whole namespace, a kernel without these calls, a
 * failure) answers "maybe", and the caller reads the mountinfo as before.
 */
import { kernelCompat } from '../ns/kernel-compat.js';
import type { Libc } from '../ns/libc.js';
import { MW, type MountSyscalls, mountSyscalls } from '../ns/mount-syscalls.js';
import type { Pidfd } from '../ns/pidfd.js';

/** NFS_SUPER_MAGIC (include/uapi/linux/magic.h): nfs and nfs4 superblocks alike. */
export const NFS_SUPER_MAGIC = 0x6969;
/** Namespaces remembered (least recently asked dropped first); an entry is a few hundred bytes. */
const MAX_NAMESPACES = 256;
/** Mount ids per listmount(2) call. */
const IDS_PER_CALL = 512;

interface Known {
  /** The namespace's mount ids, in id order, as listmount gave them. */
  ids: Buffer;
  nfs: boolean;
}

export class NfsMountCache {
  private readonly known = new Map<bigint, Known>();
  private readonly idBuf = Buffer.alloc(8 * IDS_PER_CALL);
  private readonly info = Buffer.alloc(MW.MNT_NS_INFO_SIZE);
  private sysBound: MountSyscalls | null = null;

  constructor(private readonly libc: Libc, private readonly bindSys: () => MountSyscalls = mountSyscalls) {}

  /** False only when the kernel says no mount of `requester`'s mount namespace is NFS. */
  mayHaveNfs(requester: Pidfd): boolean {
    const compat = kernelCompat(this.libc);
    if (!compat.has('pidfd-ns') || !compat.has('statmount-ns')) return true;
    let ns;
    try {
      ns = requester.namespace('mnt');
    } catch {
      return true;
    }
    try {
      // The held nsfs fd keeps the namespace (and so its id) alive while we ask about it.
      const nsInfo = this.nsInfo(ns.fd);
      if (nsInfo === null) return true;
      const ids = this.mountIds(nsInfo.id, nsInfo.mounts);
      if (ids === null) return true;
      const seen = this.known.get(nsInfo.id);
      if (seen !== undefined && seen.ids.equals(ids)) {
        this.known.delete(nsInfo.id); // most recently asked last
        this.known.set(nsInfo.id, seen);
        return seen.nfs;
      }
      const nfs = this.anyNfs(nsInfo.id, ids);
      if (nfs === null) return true;
      this.remember(nsInfo.id, { ids: Buffer.from(ids), nfs });
      return nfs;
    } finally {
      ns.close();
    }
  }

  /** Namespaces remembered now (tests). */
  get size(): number {
    return this.known.size;
  }

  private get sys(): MountSyscalls {
    this.sysBound ??= this.bindSys();
    return this.sysBound;
  }

  /** NS_MNT_GET_INFO: struct mnt_ns_info { u32 size; u32 nr_mounts; u64 mnt_ns_id; }. */
  private nsInfo(nsfd: number): { id: bigint; mounts: number } | null {
    this.info.fill(0);
    this.info.writeUInt32LE(MW.MNT_NS_INFO_SIZE, 0);
    if (this.libc.ioctlPtr(nsfd, MW.NS_MNT_GET_INFO, this.info) < 0) return null;
    const id = this.info.readBigUInt64LE(8);
    return id === 0n ? null : { id, mounts: this.info.readUInt32LE(4) };
  }

  /**
   * Every mount id of the namespace, or null unless the listing covers all
   * `mounts` of it (listmount lists what is under the caller's root: a broker
   * with another root, or a mount made meanwhile, makes the counts differ).
   */
  private mountIds(nsId: bigint, mounts: number): Buffer | null {
    const parts: Buffer[] = [];
    let total = 0;
    let after = 0n;
    for (;;) {
      const n = this.sys.listmount(nsId, after, this.idBuf);
      if (n < 0) return null;
      total += n;
      if (total > mounts) return null;
      parts.push(Buffer.from(this.idBuf.subarray(0, 8 * n)));
      if (n < IDS_PER_CALL) break;
      after = this.idBuf.readBigUInt64LE(8 * (n - 1));
    }
    return total === mounts ? (parts.length === 1 ? parts[0]! : Buffer.concat(parts)) : null;
  }

  /** Whether any of the mounts is NFS; null when one could not be asked about (gone meanwhile). */
  private anyNfs(nsId: bigint, ids: Buffer): boolean | null {
    let nfs = false;
    for (let off = 0; off < ids.length; off += 8) {
      const magic = this.sys.superMagic(ids.readBigUInt64LE(off), nsId);
      if (magic < 0) return null;
      if (magic === NFS_SUPER_MAGIC) nfs = true;
    }
    return nfs;
  }

  private remember(nsId: bigint, k: Known): void {
    this.known.delete(nsId);
    while (this.known.size >= MAX_NAMESPACES) this.known.delete(this.known.keys().next().value!);
    this.known.set(nsId, k);
  }
}
