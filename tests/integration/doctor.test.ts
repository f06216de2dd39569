import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KERNEL_COMPAT_ENV } from '../../src/ns/kernel-compat.js';
import { runCli } from '../helpers/broker-process.js';

const EXPECTED = ['pidfd_open', 'PIDFD_GET_NAMESPACE', 'NS_GET_USERNS', 'NS_GET_PARENT', 'NS_GET_NSTYPE',
  'NS_GET_OWNER_UID', 'NS_GET_PID_FROM_PIDNS', 'PIDFD_GET_INFO', 'SO_PEERCRED+SO_PEERPIDFD', 'STATX_MNT_ID_UNIQUE',
  'unmount detection', 'setns(pidfd, all 8 namespaces)', 'spawner', 'keyutils /sbin/request-key', 'request-key upcalls from user namespaces'];

/** The features with a fallback: degraded (never missing) where the kernel lacks them. */
const WITH_FALLBACK = ['PIDFD_GET_NAMESPACE', 'PIDFD_GET_INFO', 'SO_PEERCRED+SO_PEERPIDFD', 'STATX_MNT_ID_UNIQUE', 'NS_GET_PID_FROM_PIDNS',
  'unmount detection'];

/** Whether this kernel runs request-key upcalls for callers in user namespaces is a fact of the kernel, not of ours. */
const KERNEL_FACT = 'request-key upcalls from user namespaces';

interface Report {
  ok: boolean;
  degraded: string[];
  features: Array<{ name: string; ok: boolean; status: string; detail: string; impact?: string }>;
}

async function doctor(env: Record<string, string> = {}, args: string[] = []): Promise<{ code: number | null; report: Report }> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env); // runCli's child takes the environment as it is at spawn
  try {
    const r = await runCli(['doctor', '--json', ...args]);
    return { code: r.code, report: JSON.parse(r.stdout) as Report };
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

test('doctor --json lists every feature with a status, and all work on this machine', async () => {
  const { code, report } = await doctor();
  const names = report.features.map((f) => f.name);
  for (const name of EXPECTED) assert.ok(names.includes(name), `doctor does not probe ${name}`);
  for (const f of report.features) {
    assert.equal(typeof f.detail, 'string');
    assert.ok(['ok', 'degraded', 'missing'].includes(f.status), `${f.name}: status ${f.status}`);
    assert.equal(f.ok, f.status !== 'missing');
    if (f.status !== 'ok') assert.ok(f.impact, `${f.name} says what it costs`);
    if (f.name === KERNEL_FACT) {
      // ok or fail, with the errno request_key(2) gave: ENOKEY (upcall made) or ENOENT (refused).
      assert.match(f.detail, /\b(ENOKEY|EKEYREJECTED|ENOENT)\b|made an upcall/, f.detail);
      continue;
    }
    // A missing feature fails here with its name: this suite needs them all.
    assert.equal(f.ok, true, `kernel/userspace feature missing: ${f.name}: ${f.detail}`);
  }
  assert.deepEqual(report.degraded, report.features.filter((f) => f.status === 'degraded').map((f) => f.name));
  assert.equal(code, report.features.every((f) => f.ok) ? 0 : 10);
});

test('with every fallback forced (UB_KERNEL_COMPAT=all), each is degraded with its cost, none missing', async () => {
  const { report } = await doctor({ [KERNEL_COMPAT_ENV]: 'all' });
  assert.deepEqual([...report.degraded].sort(), [...WITH_FALLBACK].sort());
  for (const name of WITH_FALLBACK) {
    const f = report.features.find((x) => x.name === name)!;
    assert.equal(f.ok, true, `${name}: ${f.detail}`);
    assert.match(f.detail, /^fallback: forced by UB_KERNEL_COMPAT/);
    assert.ok((f.impact ?? '').length > 10, `${name} says what the fallback costs`);
  }
});

test('every probe is bounded: with a 1 ms budget doctor still answers at once, naming the probes it abandoned', async () => {
  const started = Date.now();
  const { code, report } = await doctor({}, ['--timeout-ms', '1']);
  assert.ok(Date.now() - started < 30_000, 'doctor answered within 30 s');
  const abandoned = report.features.filter((f) => /no answer in 1 ms/.test(f.detail)).map((f) => f.name);
  assert.ok(abandoned.includes('setns(pidfd, all 8 namespaces)'), `abandoned: ${abandoned.join(', ')}`);
  assert.equal(code, 10);
});

test('usage errors use the documented error form and exit status', async () => {
  const r = await runCli(['serve', '--no-such-flag', '--json']);
  assert.equal(r.code, 2);
  assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, 'E_BAD_REQUEST');
});
