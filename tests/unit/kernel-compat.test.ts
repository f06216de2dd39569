import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BrokerError } from '../../src/common/errors.js';
import {
  COMPAT_FEATURE_NAMES, type CompatFeature, KernelCompat, kernelProbes, parseCompatEnv,
} from '../../src/ns/kernel-compat.js';
import { K } from '../../src/ns/kernel-constants.js';
import type { Libc } from '../../src/ns/libc.js';

function countingProbes(answers: Partial<Record<CompatFeature, boolean>>) {
  const calls = new Map<CompatFeature, number>();
  const probes = Object.fromEntries(COMPAT_FEATURE_NAMES.map((f) => [f, () => {
    calls.set(f, (calls.get(f) ?? 0) + 1);
    return answers[f] ?? true;
  }])) as Record<CompatFeature, () => boolean>;
  return { probes, calls };
}

test('UB_KERNEL_COMPAT: words, "all", and an unknown word is a config error', () => {
  assert.deepEqual([...parseCompatEnv(undefined)], []);
  assert.deepEqual([...parseCompatEnv('')], []);
  assert.deepEqual([...parseCompatEnv('no-pidfd-ns, no-peerpidfd')].sort(), ['peerpidfd', 'pidfd-ns']);
  assert.deepEqual([...parseCompatEnv('all')].sort(), [...COMPAT_FEATURE_NAMES].sort());
  for (const bad of ['pidfd-ns', 'no-such-thing']) {
    assert.throws(() => parseCompatEnv(bad), (e: unknown) => e instanceof BrokerError && e.code === 'E_CONFIG');
  }
});

test('each feature is probed once, on first use, and the answer kept', () => {
  const { probes, calls } = countingProbes({ 'pidfd-ns': false });
  const c = new KernelCompat(probes, new Set());
  assert.equal(calls.size, 0, 'nothing probed before use');
  for (let i = 0; i < 5; i++) {
    assert.equal(c.has('pidfd-ns'), false);
    assert.equal(c.has('pidfd-info'), true);
  }
  assert.equal(calls.get('pidfd-ns'), 1);
  assert.equal(calls.get('pidfd-info'), 1);
  assert.equal(c.state('pidfd-ns'), 'fallback: the kernel lacks it');
  assert.equal(c.state('pidfd-info'), 'native');
});

test('a forced fallback is never probed; markMissing switches a feature for good', () => {
  const { probes, calls } = countingProbes({});
  const c = new KernelCompat(probes, parseCompatEnv('no-mnt-id-unique'));
  assert.equal(c.has('mnt-id-unique'), false);
  assert.equal(calls.get('mnt-id-unique'), undefined);
  assert.equal(c.state('mnt-id-unique'), 'fallback: forced by UB_KERNEL_COMPAT');
  assert.equal(c.has('peerpidfd'), true);
  c.markMissing('peerpidfd');
  assert.equal(c.has('peerpidfd'), false);
  assert.equal(calls.get('peerpidfd'), 1);
});

/** A libc whose ioctls and sockopts fail with `errno`, as a kernel without them does. */
function oldKernelLibc(errno: number): Libc {
  let last = 0;
  const fail = () => {
    last = errno;
    return -1;
  };
  // Asserted, not annotated: the fake need not track every member Libc gains.
  return {
    pidfdOpen: () => -1, // replaced by withFreshFds: the probes close what they get
    pidfdSendSignal: fail,
    ioctl: fail, ioctlInt: fail, ioctlPtr: fail, getsockopt: fail,
    poll: () => 0, openat2: fail, unixDgramSocket: () => -1, sendto: fail,
    statx: (_d: number, _p: string, _f: number, _m: number, buf: Buffer) => {
      buf.writeUInt32LE(K.UB_STATX_MNT_ID, 0); // a 6.1 kernel leaves STATX_MNT_ID_UNIQUE unset
      return 0;
    },
    errno: () => last,
  } as unknown as Libc;
}

test('the real probes read ENOTTY/EINVAL as "the kernel lacks it", anything else as "it exists"', async () => {
  const { openSync } = await import('node:fs');
  const withFreshFds = (libc: Libc): Libc => ({ ...libc, pidfdOpen: () => openSync('/dev/null', 'r') });
  const lacking = kernelProbes(withFreshFds(oldKernelLibc(25 /* ENOTTY */)));
  assert.equal(lacking['pidfd-ns'](), false);
  assert.equal(lacking['pidfd-info'](), false);
  assert.equal(lacking['pidns-pid'](), false);
  assert.equal(lacking['mnt-id-unique'](), false);
  const present = kernelProbes(withFreshFds(oldKernelLibc(13 /* EACCES: the request is known */)));
  assert.equal(present['pidfd-ns'](), true);
  assert.equal(present['pidfd-info'](), true);
  assert.equal(present['pidns-pid'](), true);
});
