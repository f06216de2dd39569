import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/cli/config-loader.js';
import { BrokerError } from '../../src/common/errors.js';

function withConfig(t: { after(fn: () => void): void }, body: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'ub-rkcfg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify(body));
  return path;
}

const refused = (field: RegExp) => (e: unknown) => e instanceof BrokerError && e.code === 'E_CONFIG' && field.test(String(e.details['field']));

test('defaults: host requests declined, the kernel\'s 60 s negative timeout, kernel-thread keys capped at 10 s, no rules', () => {
  assert.deepEqual(loadConfig(undefined).requestKey, { hostRequests: 'decline', negativeTimeoutSeconds: 60, retryTimeoutSeconds: 1, kernelThreadMaxExpirySeconds: 10, rules: [] });
});

test('a rule gets its defaults filled in', (t) => {
  const c = loadConfig(withConfig(t, { requestKey: { hostRequests: 'serve', rules: [{ type: 'user', program: '/usr/bin/mk-key', args: ['%d', '%c'] }] } }));
  assert.equal(c.requestKey.hostRequests, 'serve');
  assert.equal(c.requestKey.negativeTimeoutSeconds, 60);
  assert.deepEqual(c.requestKey.rules, [{
    type: 'user', description: '*', callout: '*', program: '/usr/bin/mk-key', args: ['%d', '%c'], stdin: 'callout',
    timeoutMs: 5000, maxPayloadBytes: 32767, expirySeconds: null,
  }]);
  assert.equal(c.adminSocket, '/run/upcall-broker/broker.sock', 'other settings keep their defaults');
});

test('bad rules are refused with the field named', (t) => {
  const bad = (rule: Record<string, unknown>, field: RegExp) =>
    assert.throws(() => loadConfig(withConfig(t, { requestKey: { rules: [{ type: 'user', program: '/bin/x', ...rule }] } })), refused(field));
  bad({ type: 'dns_resolver' }, /requestKey\.rules\.0\.type/);
  bad({ type: '.request_key_auth' }, /type/);
  bad({ program: 'relative' }, /program/);
  bad({ description: 'a*b*' }, /description/);
  bad({ callout: 'has space' }, /callout/);
  bad({ args: ['%x'] }, /args\.0/);
  bad({ args: ['%{user:x}'] }, /args\.0/);
  bad({ timeoutMs: 50 }, /timeoutMs/);
  bad({ maxPayloadBytes: 0 }, /maxPayloadBytes/);
  bad({ stdin: 'file' }, /stdin/);
  bad({ surprise: true }, /rules\.0/);
  assert.throws(() => loadConfig(withConfig(t, { requestKey: { hostRequests: 'maybe' } })), refused(/hostRequests/));
});
