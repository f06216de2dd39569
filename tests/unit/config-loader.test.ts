import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/cli/config-loader.js';
import { BrokerConfigSchema, ConfigFileSchema, LimitsSchema, RelayPoolSchema } from '../../src/common/config-schema.js';
import { DEFAULT_LIMITS, DEFAULT_RELAY_POOL, limitsOf, relayPoolOf } from '../../src/common/defaults.js';
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

test('one schema: the embedded default is a valid effective config, and a file may not set nativeDir', () => {
  const c = loadConfig(undefined);
  assert.deepEqual(BrokerConfigSchema.parse(c), c);
  assert.deepEqual(c.requestKey, { hostRequests: 'decline', negativeTimeoutSeconds: 60, retryTimeoutSeconds: 1, kernelThreadMaxExpirySeconds: 10, rules: [] });
  assert.equal(ConfigFileSchema.safeParse({ nativeDir: '/x' }).success, false);
  assert.equal(ConfigFileSchema.safeParse({ logLevel: 'silly' }).success, false, 'a file names one of LOG_LEVELS');
});

test('limits and dns are overrides; limitsOf and relayPoolOf are their full views', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ub-cfg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'c.json');
  writeFileSync(path, JSON.stringify({ limits: { globalInFlight: 3 }, dns: { relaysIdle: 5 } }));
  const c = loadConfig(path);
  assert.deepEqual(c.limits, { globalInFlight: 3 }, 'only what the file set (config show prints it so)');
  assert.deepEqual(limitsOf(c), { ...DEFAULT_LIMITS, globalInFlight: 3 });
  assert.deepEqual(relayPoolOf(c), { ...DEFAULT_RELAY_POOL, relaysIdle: 5 });
  assert.deepEqual(limitsOf(loadConfig(undefined)), DEFAULT_LIMITS);
  assert.equal(LimitsSchema.safeParse(DEFAULT_LIMITS).success, true, 'the defaults pass their own schema');
  assert.equal(RelayPoolSchema.safeParse(DEFAULT_RELAY_POOL).success, true);
  writeFileSync(path, JSON.stringify({ limits: { globalInFlight: 0 } }));
  assert.throws(() => loadConfig(path), (e: unknown) => e instanceof BrokerError && e.details['field'] === 'limits.globalInFlight');
});
