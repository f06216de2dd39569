import { readFileSync } from 'node:fs';

/**
 * How much slower than this machine the tests' machine is. Inside a namespace test VM
 * the guest runs under TCG, QEMU's software CPU, and the same work takes several times
 * as long: Node starts in ~1 s instead of 40 ms. Time bounds in the testbed and in tests
 * are multiplied by this factor, so a bound still means "at once" or "within the budget"
 * relative to the machine's speed. UB_TEST_TIME_SCALE overrides it.
 *
 * The guest is recognised by its kernel command line (`ub.run=`, tests/testbed/vm), not
 * by a variable: a container's init starts with a clean environment.
 */
export const TIME_SCALE = Number(process.env.UB_TEST_TIME_SCALE ?? (inTestVm() ? 8 : 1)) || 1;

function inTestVm(): boolean {
  try {
    return / ub\.run=/.test(` ${readFileSync('/proc/cmdline', 'utf8')}`);
  } catch {
    return false;
  }
}

/** A time bound in ms, scaled to this machine. */
export function scaled(ms: number): number {
  return Math.round(ms * TIME_SCALE);
}
