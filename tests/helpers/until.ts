/**
 * The one wait in the tests: for a condition that some event will make true.
 * Bounded, and the error names what it waited for. It is not a timing
 * assertion: `ms` is only how long to wait before calling the wait failed.
 */
export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 5000, everyMs = 10): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
