/**
 * The syscalls that watch mounts (src/broker/mount-watcher.ts): fanotify on a
 * mount namespace (FAN_MNT_DETACH, Linux 6.15), statmount(2) in another mount
 * namespace (mnt_id_req.mnt_ns_id, 6.11) and NS_MNT_GET_INFO (6.11). Debian
 * 12's headers predate all of them, so the numbers are written out here
 * (x86_64 syscall numbers; uapi linux/fanotify.h, linux/mount.h, linux/nsfs.h).
 * Bound over koffi on first use, behind an interface so tests can fake it.
 */
import { createRequire } from 'node:module';
import type { Libc } from './libc.js';

export const MW = {
  NR_fanotify_init: 300,
  NR_fanotify_mark: 301,
  NR_statmount: 457,
  NR_listmount: 458,

  FAN_CLOEXEC: 0x1,
  FAN_NONBLOCK: 0x2,
  FAN_REPORT_MNT: 0x4000,
  FAN_MARK_ADD: 0x1,
  FAN_MARK_MNTNS: 0x110,
  FAN_MNT_ATTACH: 0x01000000,
  FAN_MNT_DETACH: 0x02000000,
  FAN_Q_OVERFLOW: 0x4000,
  FAN_EVENT_INFO_TYPE_MNT: 7,
  FANOTIFY_METADATA_VERSION: 3,
  /** struct fanotify_event_metadata. */
  METADATA_LEN: 24,
  /** struct fanotify_event_info_mnt: a 4-byte header, 4 of padding, the 64-bit unique mount id. */
  INFO_MNT_LEN: 16,

  /** struct mnt_id_req, MNT_ID_REQ_SIZE_VER1 (with mnt_ns_id). */
  MNT_ID_REQ_SIZE_VER1: 32,
  STATMOUNT_SB_BASIC: 0x1,
  /** struct statmount: u32 size, u32 spare, u64 mask, u32 sb_dev_major, u32 sb_dev_minor, then u64 sb_magic. */
  STATMOUNT_SB_MAGIC_OFFSET: 24,
  /** listmount(2)'s mnt_id for "the root of the namespace". */
  LSMT_ROOT: 0xffffffffffffffffn,
  /** _IOR(0xb7, 10, struct mnt_ns_info { u32 size; u32 nr_mounts; u64 mnt_ns_id; }). */
  NS_MNT_GET_INFO: 0x8010b70a,
  MNT_NS_INFO_SIZE: 16,

  ENOENT: 2,
} as const;

export interface MountSyscalls {
  /** fanotify_init(2); the fd or -1 (errno()). */
  fanotifyInit(flags: number, eventFFlags: number): number;
  /** fanotify_mark(2) with a NULL path: `dirfd` itself is the object (an nsfs fd for FAN_MARK_MNTNS). */
  fanotifyMark(fd: number, flags: number, mask: number, dirfd: number): number;
  /** statmount(2) of `mntId` in the namespace `mntNsId`: 0, or -1 (errno(): ENOENT when mount or namespace is gone). */
  statmount(mntId: bigint, mntNsId: bigint, mask: number): number;
  /** statmount(2) STATMOUNT_SB_BASIC of `mntId` in `mntNsId`: its superblock's magic, or -1 (errno()). */
  superMagic(mntId: bigint, mntNsId: bigint): number;
  /**
   * listmount(2) of the mounts of namespace `mntNsId` (LSMT_ROOT) with a unique
   * id above `after`, in id order, into `out` (u64 each): how many, or -1 (errno()).
   */
  listmount(mntNsId: bigint, after: bigint, out: Buffer): number;
  errno(): number;
}

interface KoffiModule {
  load(path: string): { func(decl: string): (...args: unknown[]) => unknown };
  errno(): number;
}

let bound: MountSyscalls | null = null;

/** The real syscalls, bound once per process. */
export function mountSyscalls(): MountSyscalls {
  if (bound !== null) return bound;
  const require = createRequire(import.meta.url);
  const koffi = require('koffi') as KoffiModule;
  const libc = koffi.load('libc.so.6');
  const syscall = libc.func('long syscall(long nr, ...)');
  // listmount runs per request (NfsMountCache): a fixed prototype, half the cost of the variadic call.
  const syscall4 = libc.func('long syscall(long nr, void *a, void *b, size_t c, unsigned int d)');
  const statBuf = Buffer.alloc(4096);
  const req = Buffer.alloc(MW.MNT_ID_REQ_SIZE_VER1);
  bound = {
    fanotifyInit: (flags, eventFFlags) => Number(syscall(MW.NR_fanotify_init, 'unsigned int', flags, 'unsigned int', eventFFlags)),
    fanotifyMark: (fd, flags, mask, dirfd) =>
      Number(syscall(MW.NR_fanotify_mark, 'int', fd, 'unsigned int', flags, 'uint64_t', BigInt(mask), 'int', dirfd, 'void *', null)),
    statmount: (mntId, mntNsId, mask) => {
      mntIdReq(req, mntId, BigInt(mask), mntNsId);
      return Number(syscall(MW.NR_statmount, 'uint8_t *', req, 'uint8_t *', statBuf, 'size_t', statBuf.length, 'unsigned int', 0));
    },
    superMagic: (mntId, mntNsId) => {
      mntIdReq(req, mntId, BigInt(MW.STATMOUNT_SB_BASIC), mntNsId);
      const r = Number(syscall(MW.NR_statmount, 'uint8_t *', req, 'uint8_t *', statBuf, 'size_t', statBuf.length, 'unsigned int', 0));
      return r < 0 ? -1 : Number(statBuf.readBigUInt64LE(MW.STATMOUNT_SB_MAGIC_OFFSET));
    },
    listmount: (mntNsId, after, out) => {
      mntIdReq(req, MW.LSMT_ROOT, after, mntNsId);
      return Number(syscall4(MW.NR_listmount, req, out, Math.floor(out.length / 8), 0));
    },
    errno: () => koffi.errno(),
  };
  return bound;
}

/** struct mnt_id_req { u32 size; u32 spare; u64 mnt_id; u64 param; u64 mnt_ns_id; }. */
export function mntIdReq(buf: Buffer, mntId: bigint, param: bigint, mntNsId: bigint): Buffer {
  buf.fill(0);
  buf.writeUInt32LE(MW.MNT_ID_REQ_SIZE_VER1, 0);
  buf.writeBigUInt64LE(mntId, 8);
  buf.writeBigUInt64LE(param, 16);
  buf.writeBigUInt64LE(mntNsId, 24);
  return buf;
}

/** NS_MNT_GET_INFO on a mount namespace fd: the namespace's 64-bit id (never reused), or null where the ioctl is missing. */
export function mntNsIdOf(libc: Libc, nsfd: number): bigint | null {
  const info = Buffer.alloc(MW.MNT_NS_INFO_SIZE);
  info.writeUInt32LE(MW.MNT_NS_INFO_SIZE, 0);
  if (libc.ioctlPtr(nsfd, MW.NS_MNT_GET_INFO, info) < 0) return null;
  const id = info.readBigUInt64LE(8);
  return id === 0n ? null : id;
}
