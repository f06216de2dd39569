import { libcFunction } from '../ns/libc.js';

/** mallopt's parameter for the number of arenas (glibc malloc.h). */
const M_ARENA_MAX = -8;

/**
 * Limit glibc's malloc to `max` arenas, as MALLOC_ARENA_MAX does, for a process
 * started without it (`serve` from a shell, a unit without the Environment= line).
 * glibc gives each thread that meets contention an arena of its own, up to 8 per
 * core; the broker's V8 and libuv threads touched 6-8 MB of them at 10,000
 * registrations, for allocations the main thread's heap holds as well (the broker
 * has one JS thread). An operator's MALLOC_ARENA_MAX wins (glibc read it at start).
 * Called before the other modules load; false when it did nothing (set already,
 * not glibc, koffi missing).
 */
export function limitMallocArenas(max: number): boolean {
  if (process.env.MALLOC_ARENA_MAX !== undefined) return false;
  try {
    return libcFunction('int mallopt(int param, int value)')(M_ARENA_MAX, max) === 1;
  } catch {
    return false;
  }
}

let trim: ((pad: number) => unknown) | null | undefined;

/**
 * Give free malloc memory back to the kernel (glibc malloc_trim(0): free pages
 * inside the heap too, not only at its top). False when not available.
 */
export function trimMalloc(): boolean {
  if (trim === undefined) {
    try {
      trim = libcFunction('int malloc_trim(size_t pad)');
    } catch {
      trim = null;
    }
  }
  if (trim === null) return false;
  trim(0);
  return true;
}
