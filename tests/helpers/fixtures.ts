import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/common/paths.js';

/**
 * Where the tests' C programs are (tests/fixtures/*.c, built by
 * `npm run fixtures`, which `npm test`, `npm run bench` and `npm run test:vm`
 * run first; never at `npm install`).
 */
export const FIXTURES_DIR = join(PACKAGE_ROOT, 'build', 'fixtures');

/** The probe that prints what a process inherited (tests/fixtures/ub-probe.c). */
export const PROBE = join(FIXTURES_DIR, 'ub-probe');
/** Fork a child with a chosen pid, clone3 with set_tid (tests/fixtures/pid-at.c). */
export const PID_AT = join(FIXTURES_DIR, 'ub-pid-at');
/** Run a program under a seccomp filter that fails one syscall with an odd errno (tests/fixtures/seccomp-exec.c). */
export const SECCOMP_EXEC = join(FIXTURES_DIR, 'ub-seccomp-exec');
