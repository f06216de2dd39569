import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { renderUnits } from '../../src/cli/systemd-command.js';
import { PACKAGE_ROOT } from '../../src/common/paths.js';

test('the Kubernetes DaemonSet example parses and runs the broker per node in the host pid namespace', () => {
  const docs = parseAllDocuments(readFileSync(join(PACKAGE_ROOT, 'examples/kubernetes/daemonset.yaml'), 'utf8'));
  for (const d of docs) assert.deepEqual(d.errors, []);
  const [ds, cm] = docs.map((d) => d.toJS() as Record<string, any>);
  assert.equal(ds!['kind'], 'DaemonSet');
  assert.equal(ds!['spec'].template.spec.hostPID, true);
  assert.deepEqual(ds!['spec'].template.spec.containers[0].command.slice(0, 2), ['upcall-broker', 'serve']);
  assert.equal(cm!['kind'], 'ConfigMap');
  JSON.parse(cm!['data']['config.json']); // the embedded broker config is valid JSON
});

test('systemd units: socket activation names, Type=notify, watchdog, no inherited seccomp or no_new_privs', () => {
  const units = renderUnits('/usr/bin/node', '/opt/ub/cli.js');
  const service = units['upcall-broker.service']!;
  const socket = units['upcall-broker.socket']!;
  assert.match(service, /^ExecStart=\/usr\/bin\/node \/opt\/ub\/cli\.js serve/m);
  assert.match(service, /^Type=notify$/m);
  assert.match(service, /^WatchdogSec=/m);
  for (const inherited of ['NoNewPrivileges', 'SystemCallFilter', 'CapabilityBoundingSet', 'MemoryDenyWriteExecute']) {
    assert.doesNotMatch(service, new RegExp(`^${inherited}=`, 'm'), `${inherited} would reach upcall children`);
  }
  assert.match(socket, /^FileDescriptorName=admin$/m);
  assert.match(socket, /^FileDescriptorName=tenant$/m);
  assert.doesNotMatch(service + socket, /@NODE@|@CLI@/);
});

test('the custom key type example config is valid; config check names a bad field', async () => {
  const { runCli } = await import('../helpers/broker-process.js');
  const ok = await runCli(['config', 'check', join(PACKAGE_ROOT, 'examples/request-key/config.json'), '--json']);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const dir = mkdtempSync('/tmp/ub-cfgcheck-');
  try {
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ requestKey: { rules: [{ type: 'user', program: 'relative' }] } }));
    const bad = await runCli(['config', 'check', join(dir, 'bad.json'), '--json']);
    assert.equal(bad.code, 12);
    assert.match((JSON.parse(bad.stdout) as { error: { message: string } }).error.message, /requestKey\.rules\.0\.program/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
