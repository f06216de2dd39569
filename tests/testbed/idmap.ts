/**
 * uid/gid ranges for container user namespaces.
 *
 * Like real runtimes, container root maps to an unprivileged host range
 * (0..65535 -> base..base+65535), never to host root: tests must see the
 * kernel's view of a container process (e.g. SO_PEERCRED) as a real one.
 */
import { writeFile } from 'node:fs/promises';

export const ID_RANGE_SIZE = 65536;
const FIRST_BASE = 200_000;
/**
 * Slots such that FIRST_BASE + SLOTS * RANGE stays below 2^31: the kernel hands
 * the key's uid to /sbin/request-key as a decimal %u, and keyutils' option
 * parser takes a uid >= 2^31 printed as a negative number for an option, so
 * every request-key upcall from such a container would fail.
 */
const SLOTS = 32_000;

let allocated = 0;

/**
 * Next base for this process. Consecutive containers of one process get
 * consecutive slots; the starting slot is derived from the pid so concurrent
 * test processes (node --test runs files in parallel) start far apart and
 * only collide after ~97 containers each. A collision would be harmless for
 * most tests anyway; it only weakens uid-isolation assertions.
 */
export function allocateIdBase(): number {
  const slot = (process.pid * 97 + allocated++) % SLOTS;
  return FIRST_BASE + slot * ID_RANGE_SIZE;
}

/**
 * Writes the maps of the user namespace `pid` lives in. We write as host
 * root, so no newuidmap is needed and setgroups may stay "allow" (deny is
 * only required for unprivileged writers of gid_map). setgroups must be
 * written before gid_map to have any effect; we write it to state intent.
 */
export async function writeIdMaps(pid: number, base: number): Promise<void> {
  const map = `0 ${base} ${ID_RANGE_SIZE}\n`;
  await writeFile(`/proc/${pid}/uid_map`, map);
  await writeFile(`/proc/${pid}/setgroups`, 'allow\n');
  await writeFile(`/proc/${pid}/gid_map`, map);
}
