import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCli } from '../helpers/broker-process.js';

const EXPECTED = ['pidfd_open', 'PIDFD_GET_NAMESPACE', 'NS_GET_USERNS', 'NS_GET_PARENT', 'NS_GET_NSTYPE',
  'NS_GET_OWNER_UID', 'NS_GET_PID_FROM_PIDNS', 'PIDFD_GET_INFO', 'SO_PEERCRED+SO_PEERPIDFD',
  'setns(pidfd, all 8 namespaces)', 'spawner', 'keyutils /sbin/request-key'];

test('doctor --json lists every feature with a status, and all work on this machine', async () => {
  const r = await runCli(['doctor', '--json']);
  const report = JSON.parse(r.stdout) as { features: Array<{ name: string; ok: boolean; detail: string }> };
  const names = report.features.map((f) => f.name);
  for (const name of EXPECTED) assert.ok(names.includes(name), `doctor does not probe ${name}`);
  for (const f of report.features) {
    assert.equal(typeof f.detail, 'string');
    // A missing feature fails here with its name: this suite needs them all.
    assert.equal(f.ok, true, `kernel/userspace feature missing: ${f.name}: ${f.detail}`);
  }
  assert.equal(r.code, 0);
});

test('usage errors use the documented error form and exit status', async () => {
  const r = await runCli(['serve', '--no-such-flag', '--json']);
  assert.equal(r.code, 2);
  assert.equal((JSON.parse(r.stdout) as { error: { code: string } }).error.code, 'E_BAD_REQUEST');
});
