/**
 * Where the kernel-path suites run (tests/kernel-path/): on this machine when its
 * kernel runs request-key upcalls for callers in user namespaces, and in a
 * namespace test VM (tests/testbed/vm) when it refuses them. Never skipped.
 *
 * Some kernel builds (this machine kind's 6.18 among them) make `request_key(2)`
 * fail with ENOENT for any caller whose credentials are in a non-initial user
 * namespace, and never start /sbin/request-key; a container's keys can then not
 * be built through the kernel at all, whatever the broker does.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../../src/common/paths.js';
import { DEFAULT_KERNEL } from '../testbed/vm/kernels.js';
import { runInVm } from '../testbed/vm/vm.js';
import { parseTap, type TapSummary } from './tap.js';

const run = promisify(execFile);
export const KERNEL_PATH_DIR = join(PACKAGE_ROOT, 'dist', 'tests', 'kernel-path');

export type Site = { kind: 'host'; release: string; why: string } | { kind: 'vm'; kernel: string; why: string };

/** ENOENT at once from a user namespace = this kernel refuses; anything else reached /sbin/request-key. */
export async function hostRunsUsernsUpcalls(): Promise<{ ok: boolean; seen: string }> {
  const desc = `ub-kernel-path-probe-${process.pid}-${randomBytes(4).toString('hex')}`;
  const r = await run('unshare', ['--user', '--map-root-user', 'keyctl', 'session', '-', 'keyctl', 'request2', 'user', desc, 'x', '@s'],
    { timeout: 10_000 }).then(() => ({ stderr: '' }), (e: { stderr?: string }) => ({ stderr: e.stderr ?? String(e) }));
  const seen = /request_key: (.*)/.exec(r.stderr)?.[1] ?? (r.stderr.trim() || 'the key was built');
  return { ok: !/No such file or directory/.test(seen), seen };
}

/** UB_KERNEL_PATH_SITE=host|vm[:KERNEL] decides; otherwise the probe does. */
export async function kernelPathSite(): Promise<Site> {
  const forced = process.env.UB_KERNEL_PATH_SITE;
  const release = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  if (process.env.UB_VM_KERNEL) return { kind: 'host', release, why: 'already inside a namespace test VM' };
  if (forced === 'host') return { kind: 'host', release, why: 'UB_KERNEL_PATH_SITE=host' };
  if (forced?.startsWith('vm')) return { kind: 'vm', kernel: forced.split(':')[1] ?? DEFAULT_KERNEL, why: `UB_KERNEL_PATH_SITE=${forced}` };
  const probe = await hostRunsUsernsUpcalls();
  return probe.ok
    ? { kind: 'host', release, why: `linux ${release} runs request-key upcalls for user-namespace callers (${probe.seen})` }
    : { kind: 'vm', kernel: DEFAULT_KERNEL, why: `linux ${release} refuses request-key upcalls for user-namespace callers (request_key: ${probe.seen})` };
}

/** Absolute paths of the compiled kernel-path suites. */
export function kernelPathFiles(): string[] {
  return readdirSync(KERNEL_PATH_DIR).filter((f) => f.endsWith('.test.js')).sort().map((f) => join(KERNEL_PATH_DIR, f));
}

export interface SuiteRun {
  /** Absolute path of the compiled suite. */
  file: string;
  status: number;
  tap: TapSummary;
  stderr: string;
  where: string;
  /** In a guest: the failures of a first attempt that a second one, in a new boot, passed. */
  retried?: string[];
}

const TAP_ARGS = ['--test', '--test-reporter=tap', '--test-concurrency=1'];

/** Each file in its own `node --test` on this machine, one after another. */
export async function runOnHost(files: string[]): Promise<SuiteRun[]> {
  const where = `host linux ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}`;
  const out: SuiteRun[] = [];
  for (const file of files) {
    const r = await run(process.execPath, [...TAP_ARGS, file], { maxBuffer: 1 << 26, timeout: 20 * 60_000 })
      .then((x) => ({ ...x, code: 0 }), (e: { stdout?: string; stderr?: string; code?: number }) => ({ stdout: e.stdout ?? '', stderr: e.stderr ?? String(e), code: e.code ?? 1 }));
    out.push({ file, status: r.code, tap: parseTap(r.stdout), stderr: r.stderr, where });
  }
  return out;
}

/**
 * All files in one boot of a namespace test VM (a boot costs ~5 s under TCG), each in
 * its own `node --test` there; the TAP comes back through the run directory.
 */
export async function runInGuest(files: string[], kernel: string, env: Record<string, string> = {}): Promise<{ runs: SuiteRun[]; bootToCommandMs: number | null }> {
  const script = [
    'set -u',
    'i=0',
    'for f in "$@"; do',
    `  node ${TAP_ARGS.join(' ')} "$f" >"$UB_VM_RUN_DIR/$i.tap" 2>"$UB_VM_RUN_DIR/$i.err"`,
    '  echo $? >"$UB_VM_RUN_DIR/$i.status"',
    '  echo "kernel-path: $f exit $(cat "$UB_VM_RUN_DIR/$i.status")" >&2',
    '  i=$((i + 1))',
    'done',
  ].join('\n');
  const runs: SuiteRun[] = [];
  const stderr: Buffer[] = [];
  const sink = new PassThrough();
  sink.on('data', (b: Buffer) => stderr.push(b));
  const result = await runInVm({
    kernel, argv: ['bash', '-c', script, 'kernel-path', ...files], cwd: PACKAGE_ROOT, env, timeoutMs: 45 * 60_000,
    stdout: sink, stderr: sink,
    keepRunDir: (dir) => {
      for (const [i, file] of files.entries()) {
        const read = (ext: string) => { try { return readFileSync(join(dir, `${i}.${ext}`), 'utf8'); } catch { return ''; } };
        const status = read('status').trim();
        runs.push({ file, status: status === '' ? -1 : Number(status), tap: parseTap(read('tap')), stderr: read('err'), where: '' });
      }
    },
  });
  for (const r of runs) {
    r.where = `vm linux ${result.release}`;
    if (result.status !== 0) r.stderr += `\nvm exit ${result.status}: ${Buffer.concat(stderr).toString().slice(-4000)}`;
  }
  return { runs, bootToCommandMs: result.bootToCommandMs };
}

/**
 * runInGuest, and once more in a fresh boot for the suites that failed. Under TCG two
 * emulated CPUs share this machine's two cores with everything else, and a suite's time
 * bounds (scaled, tests/testbed/time-scale.ts) can still run out on a loaded machine. A
 * suite that fails twice fails; one that passes the second time is reported with the
 * first attempt's failures (SuiteRun.retried), never silently.
 */
export async function runInGuestRetrying(files: string[], kernel: string): Promise<{ runs: SuiteRun[]; bootToCommandMs: number | null }> {
  const first = await runInGuest(files, kernel);
  const failed = first.runs.filter(failedRun);
  if (failed.length === 0) return first;
  const second = await runInGuest(failed.map((r) => r.file), kernel);
  const runs = first.runs.map((r) => {
    const again = second.runs.find((x) => x.file === r.file);
    if (!again) return r;
    const names = r.tap.cases.filter((c) => !c.ok && !c.hasChildren && c.directive !== 'todo').map((c) => c.path.join(' › '));
    return { ...again, retried: names.length ? names : [`exit ${r.status}`] };
  });
  return { runs, bootToCommandMs: first.bootToCommandMs };
}

export function failedRun(r: SuiteRun): boolean {
  return r.status !== 0 || r.tap.cases.length === 0 || (r.tap.counts.skipped ?? 0) > 0;
}
