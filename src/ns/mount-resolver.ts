import { readFileSync } from 'node:fs';
import { BrokerError, errnoError } from '../common/errors.js';
import { kernelCompat } from './kernel-compat.js';
import { K } from './kernel-constants.js';
import type { Libc } from './libc.js';
import { OwnedFd } from './owned-fd.js';
import type { Pidfd } from './pidfd.js';

export interface ResolvedMount {
  /** STATX_MNT_ID_UNIQUE when the kernel has it (6.8+), else the reusable legacy id. */
  mountId: number;
  mountIdKind: 'unique' | 'legacy';
  isMountRoot: boolean;
  /** From the process's mountinfo, when its legacy mount id is found there. */
  fstype: string | null;
  source: string | null;
}

/**
 * Resolve `path` the way the process behind `pidfd` sees it: in its mount
 * namespace and under its root. We open /proc/<pid>/root and then resolve with
 * openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), so absolute symlinks and ".."
 * stay inside the process's root (following them from /proc/<pid>/root by plain
 * path lookup would escape to the broker's root). The pidfd is checked alive
 * after each /proc read, so a reused pid cannot answer for the process.
 */
export function resolveMountOf(libc: Libc, pidfd: Pidfd, path: string): ResolvedMount {
  if (!path.startsWith('/') || path.includes('\0')) throw new BrokerError('E_BAD_REQUEST', 'mountpoint must be an absolute path');
  using root = openHow(libc, K.UB_AT_FDCWD, `/proc/${pidfd.pid}/root`, K.UB_O_PATH | K.UB_O_DIRECTORY | K.UB_O_CLOEXEC, 0);
  ensureAlive(pidfd);
  using target = openHow(libc, root.fd, path, K.UB_O_PATH | K.UB_O_CLOEXEC, K.UB_RESOLVE_IN_ROOT | K.UB_RESOLVE_NO_MAGICLINKS);
  // STATX_MNT_ID_UNIQUE (6.8) only where the kernel has it (asking elsewhere just leaves its bit unset).
  const unique = kernelCompat(libc).has('mnt-id-unique') ? statxMount(libc, target.fd, K.UB_STATX_MNT_ID_UNIQUE) : { id: null };
  const legacy = statxMount(libc, target.fd, K.UB_STATX_MNT_ID);
  const info = legacy.id === null ? null : mountinfoEntry(pidfd, legacy.id);
  ensureAlive(pidfd);
  const id = unique.id ?? legacy.id;
  if (id === null) throw new BrokerError('E_NO_KERNEL_FEATURE', 'statx reports no mount id');
  return {
    mountId: id,
    mountIdKind: unique.id !== null ? 'unique' : 'legacy',
    isMountRoot: legacy.isMountRoot,
    fstype: info?.fstype ?? null,
    source: info?.source ?? null,
  };
}

function openHow(libc: Libc, dirfd: number, path: string, flags: number, resolve: number): OwnedFd {
  const how = Buffer.alloc(24);
  how.writeBigUInt64LE(BigInt(flags), 0);
  how.writeBigUInt64LE(BigInt(resolve), 16);
  const fd = libc.openat2(dirfd, path, how);
  if (fd < 0) {
    const errno = libc.errno();
    throw errnoError('openat2', errno, `cannot resolve ${path} in the process's root`, errno === 2 ? 'E_NOT_FOUND' : undefined);
  }
  return new OwnedFd(fd);
}

function statxMount(libc: Libc, fd: number, mask: number): { id: number | null; isMountRoot: boolean } {
  const buf = Buffer.alloc(256);
  if (libc.statx(fd, '', K.UB_AT_EMPTY_PATH, mask, buf) < 0) throw errnoError('statx', libc.errno(), 'mount id');
  const gotMask = buf.readUInt32LE(0);
  const attributes = buf.readBigUInt64LE(8);
  const attributesMask = buf.readBigUInt64LE(56);
  const rootBit = BigInt(K.UB_STATX_ATTR_MOUNT_ROOT);
  return {
    id: (gotMask & mask) !== 0 ? Number(buf.readBigUInt64LE(144)) : null,
    isMountRoot: (attributesMask & rootBit) !== 0n && (attributes & rootBit) !== 0n,
  };
}

/** mountinfo(5): `id parent major:minor root mountpoint opts [optional...] - fstype source superopts`. */
function mountinfoEntry(pidfd: Pidfd, legacyId: number): { fstype: string; source: string } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pidfd.pid}/mountinfo`, 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${legacyId} `)) continue;
    const tail = line.split(' - ')[1]?.split(' ');
    if (tail && tail.length >= 2) return { fstype: unescapeMountinfo(tail[0]!), source: unescapeMountinfo(tail[1]!) };
  }
  return null;
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function ensureAlive(pidfd: Pidfd): void {
  if (!pidfd.isAlive()) throw new BrokerError('E_NO_PROCESS', `process ${pidfd.pid} exited during registration`);
}
