import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { DEFAULT_NATIVE_DIR } from '../../src/common/paths.js';
import { runCSelftest } from '../helpers/c-selftest.js';

// The handler's pure C parts (/proc/keys and stat parsing, arguments, base64, request JSON,
// the broker's decision) are tested in C: native-bindings/test/upcall-request-key-selftest.c.
test('upcall-request-key selftest passes', () => {
  runCSelftest('upcall-request-key-selftest', 100, 30_000);
});

test('upcall-request-key: usage errors exit 2 before touching any key; --version and --help exit 0', () => {
  const bin = join(DEFAULT_NATIVE_DIR, 'upcall-request-key');
  const bad = spawnSync(bin, ['create', '1'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /expected the 10 request-key arguments/);
  assert.equal(spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout.trim(), 'upcall-request-key 0.1.0');
  assert.match(spawnSync(bin, ['--help'], { encoding: 'utf8' }).stdout, /%o %k %t %d %c %u %g %T %P %S/);
  // Run by hand, without the authority the kernel gives request-key: it says so and exits 1.
  const noauth = spawnSync(bin, ['create', '12345', 'user', 'x', '', '0', '0', '0', '0', '0'], { encoding: 'utf8' });
  assert.equal(noauth.status, 1);
  assert.match(noauth.stderr, /cannot assume authority/);
  const ping = spawnSync(bin, ['--ping', '--socket', '/nonexistent/ub.sock', '--timeout-ms', '200'], { encoding: 'utf8' });
  assert.equal(ping.status, 1);
  assert.match(ping.stderr, /E_UNAVAILABLE/);
});
