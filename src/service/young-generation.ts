import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';

/**
 * Cap on V8's young generation (both semi-spaces), set at run time by `serve`.
 *
 * V8 doubles the young generation, up to 32 MiB on x64, whenever many objects
 * survive a scavenge (compiling the modules at start, a burst of registrations,
 * a `list`), and gives it back only when its memory reducer runs on an idle
 * process. The broker's live young objects at any moment are a few requests'
 * worth, so most of it is empty pages that count in its RSS.
 * `--max-semi-space-size` would cap it, but only on the node command line; the
 * growth factor, though, is read at each growth: this sets it to 1 (no growth)
 * when one more doubling would pass the cap, and back to V8's 2 when the young
 * generation is smaller (the memory reducer shrank it), checked after each
 * garbage collection. Observers run between turns of the event loop, so collections within one turn can
 * still double it once past the check: a soft cap. It must run before the other modules load (src/cli/main.ts).
 *
 * Measured (docs/operations.md, "Memory"): at 10,200 registrations, right after
 * five full `list`s, 103-104 MB with an 8 MiB cap against 111-112 MB with 16 MiB
 * (where module loading leaves it); the cost is more frequent scavenges (the
 * share of time in GC about doubles under the throughput bench's load).
 */
export function capYoungGeneration(capBytes: number): { stop(): void } {
  let growing = true;
  const check = (): void => {
    const size = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
    // Observers run after the collection, not during it: allow a growth only if its doubling stays within the cap.
    const grow = size * 2 <= capBytes;
    if (grow === growing) return;
    growing = grow;
    v8.setFlagsFromString(`--semi-space-growth-factor=${grow ? 2 : 1}`);
  };
  const observer = new PerformanceObserver(check);
  observer.observe({ entryTypes: ['gc'] });
  check();
  return {
    stop(): void {
      observer.disconnect();
      if (!growing) v8.setFlagsFromString('--semi-space-growth-factor=2');
    },
  };
}

/** The cap `serve` sets, 8 MiB, unless UPCALL_BROKER_YOUNG_GENERATION_MB says otherwise (0: V8's own, 32 MiB). */
export function youngGenerationCapBytes(env: NodeJS.ProcessEnv = process.env): number | null {
  const raw = env.UPCALL_BROKER_YOUNG_GENERATION_MB;
  const mb = raw === undefined || !/^\d{1,4}$/.test(raw) ? 8 : Number(raw);
  return mb === 0 ? null : mb * 1024 * 1024;
}

/**
 * Scavenges (collections of the young generation) on the main thread only: V8's `--no-parallel-scavenge`,
 * read at each scavenge, so it can be set at run time. A parallel scavenge splits its work between the main
 * thread and V8's helper threads, and the main thread waits for all of them: on a busy machine (2 cores
 * shared with the upcalls, the zygote and other services) a helper may wait for a core, and the event loop
 * with it. Measured under the throughput bench's open loop: scavenges of 20-28 ms during which the main
 * thread neither ran nor waited for a core. At 1,000 upcalls/s 0.2-0.5 MB survive each scavenge, which the
 * main thread alone copies in about a millisecond when it is not preempted (docs/operations.md, "Memory").
 * (`--single-threaded-gc` would also make marking serial, but V8 cannot switch concurrent marking at run time.)
 */
export function serialScavenges(): void {
  v8.setFlagsFromString('--no-parallel-scavenge');
}

/** Whether `serve` makes scavenges serial: yes unless UPCALL_BROKER_PARALLEL_SCAVENGE=1. */
export function serialScavengesWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.UPCALL_BROKER_PARALLEL_SCAVENGE !== '1';
}
