/**
 * Run a guest-side shell script of the real-filesystem tests (tests/integration/vm/)
 * in a namespace test VM through the harness command (`npm run vm`), or directly when
 * already inside a guest (UB_VM_KERNEL set), and collect its `RESULT key value` lines.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/common/paths.js';

const VM_MAIN = join(PACKAGE_ROOT, 'dist', 'tests', 'testbed', 'vm', 'main.js');

/** The kernels of the matrix, or the one this guest runs. */
export const GUEST_KERNELS = process.env.UB_VM_KERNEL ? [process.env.UB_VM_KERNEL] : ['6.1', '6.12'];

export interface GuestRun {
  status: number;
  /** RESULT lines by key, in order. */
  results: Map<string, string[]>;
  /** stdout and stderr, for failure messages. */
  log: string;
  /** Set when a first run did not pass `accept` and these are a second run's results: the first's log. */
  firstAttempt?: string;
}

export function parseResults(out: string): Map<string, string[]> {
  const r = new Map<string, string[]>();
  for (const line of out.split('\n')) {
    const m = /^RESULT (\S+) ?(.*)$/.exec(line);
    if (m) r.set(m[1]!, [...(r.get(m[1]!) ?? []), m[2]!]);
  }
  return r;
}

export async function runGuestScript(script: string, kernel: string, timeoutSeconds = 900): Promise<GuestRun> {
  const path = join(PACKAGE_ROOT, 'tests', 'integration', 'vm', script);
  const argv = process.env.UB_VM_KERNEL
    ? ['bash', path]
    : [process.execPath, VM_MAIN, '--kernel', kernel, '--timeout', String(timeoutSeconds), '--', 'bash', path];
  const p = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (b: Buffer) => (out += b.toString()));
  p.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const status = await new Promise<number>((resolve) => p.on('close', (c) => resolve(c ?? 1)));
  return { status, results: parseResults(out), log: `${out}\n--- stderr ---\n${err}` };
}

/**
 * runGuestScript, and once more in a fresh boot when the first run's results do not
 * pass `accept` (the scenario's essential steps). Under TCG the guest shares this
 * machine's two cores with everything else, and a server's start or a mount's timeout
 * can still run out on a loaded machine. The first attempt's log is kept in
 * `firstAttempt`, and the test reports it: a retry is never silent.
 */
export async function runGuestScriptRetrying(script: string, kernel: string, accept: (run: GuestRun) => boolean): Promise<GuestRun> {
  const first = await runGuestScript(script, kernel);
  if (accept(first)) return first;
  const second = await runGuestScript(script, kernel);
  return { ...second, firstAttempt: first.log };
}
