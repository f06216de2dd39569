/**
 * Pid reuse in the native core (issue 16, findings 5 and 6), on the real
 * kernel: native-bindings/test/context-selftest.c runs each case as pid 1 of a
 * fresh pid namespace and hands a number that just became free to another
 * process with clone3(set_tid), so the reuse happens every time, between
 * exactly the two steps under test. Runs as root.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { DEFAULT_NATIVE_DIR } from '../../src/common/paths.js';

test('a reused init pid is never interrupted by the seccomp capture, and a reused child or parent pid is never pinned', () => {
  const r = spawnSync(join(DEFAULT_NATIVE_DIR, 'ub-context-selftest'), ['-v'], { encoding: 'utf8', timeout: 60_000 });
  const lines = r.stdout.trim().split('\n');
  const last = lines.at(-1) ?? '';
  assert.equal(r.status, 0, `${lines.filter((l) => /FAIL/.test(l)).join('\n')}\n${last}\n${r.stderr}`);
  const m = /^(\d+) passed, (\d+) failed$/.exec(last);
  assert.ok(m, `unexpected last line: ${last}`);
  // 9 checks for the seccomp capture, 9 per mode of the children check: PIDFD_GET_INFO
  // (Linux 6.13; older kernels say so and run the fallback only) and /proc/<pid>/stat
  const info = !/note: no PIDFD_GET_INFO/.test(r.stdout);
  assert.ok(Number(m[1]) >= (info ? 27 : 18), `the selftest ran its cases:\n${r.stdout}`);
  assert.match(r.stdout, /seccomp: E_INIT_EXITED: init exited before PTRACE_SEIZE/);
  if (info) assert.match(r.stdout, /open_child \(PIDFD_GET_INFO\) done/);
  assert.match(r.stdout, /open_child \(\/proc\/<pid>\/stat\) done/);
});
