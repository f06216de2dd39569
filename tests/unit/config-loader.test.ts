import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/cli/config-loader.js';
import { BrokerError } from '../../src/common/errors.js';

test('no file: the embedded defaults', () => {
  const c = loadConfig(undefined);
  assert.equal(c.adminSocket, '/run/upcall-broker/broker.sock');
  assert.equal(c.stateDir, '/var/lib/upcall-broker');
});

test('a bad file is refused with the field named', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ub-cfg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'c.json');
  writeFileSync(path, JSON.stringify({ adminSocket: 'relative/path' }));
  assert.throws(() => loadConfig(path), (e: unknown) =>
    e instanceof BrokerError && e.code === 'E_CONFIG' && e.details['field'] === 'adminSocket');
  writeFileSync(path, JSON.stringify({ logLevel: 'debug', stateDir: '/tmp/x' }));
  assert.equal(loadConfig(path).logLevel, 'debug');
  assert.equal(loadConfig(path).stateDir, '/tmp/x');
});
