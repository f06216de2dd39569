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
