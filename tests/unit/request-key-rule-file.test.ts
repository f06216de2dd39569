import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fallbacksFor } from '../../src/cli/request-key-command.js';
import { BrokerError } from '../../src/common/errors.js';
import {
  activeLines, installRuleFile, isOurs, readRuleFile, renderRuleFile, RULE_FILE_MARKER, type RuleFileSpec, ruleLine, uninstallRuleFile, validateSpec,
} from '../../src/upcall/request-key/rule-file.js';
import { matchPattern } from '../../src/upcall/request-key/rules.js';

// Everything here lives in a private temp dir: nothing is ever written under /etc.
function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'ub-rkfile-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function spec(dir: string, over: Partial<RuleFileSpec> = {}): RuleFileSpec {
  const handler = join(dir, 'upcall-request-key');
  writeFileSync(handler, '#!/bin/sh\n');
  chmodSync(handler, 0o755);
  return { handler, socket: '/run/upcall-broker/broker.sock', types: ['dns_resolver', 'user'], match: 'ubt123*',
    fallback: { dns_resolver: '/sbin/key.dns_resolver', user: null }, timeoutMs: null, strict: false, ...over };
}

const isErr = (code: string) => (e: unknown) => e instanceof BrokerError && e.code === code;

describe('the request-key.d line', () => {
  test('one create line per type, the handler with its ten macros in order', (t) => {
    const s = spec(tempDir(t));
    assert.equal(ruleLine(s, 'dns_resolver'),
      `create\tdns_resolver\tubt123*\t*\t${s.handler} --socket /run/upcall-broker/broker.sock --fallback /sbin/key.dns_resolver %o %k %t %d %c %u %g %T %P %S`);
    assert.equal(ruleLine({ ...s, timeoutMs: 500, strict: true }, 'user'),
      `create\tuser\tubt123*\t*\t${s.handler} --socket /run/upcall-broker/broker.sock --timeout-ms 500 --strict %o %k %t %d %c %u %g %T %P %S`);
  });

  test('the header says who wrote it, when, and how to remove it; request-key skips it', (t) => {
    const s = spec(tempDir(t));
    const text = renderRuleFile(s, { file: '/etc/request-key.d/x.conf', writtenAt: '2026-01-01T00:00:00.000Z', by: 'tester' });
    const lines = text.split('\n');
    assert.equal(lines[0], RULE_FILE_MARKER);
    assert.match(text, /Written 2026-01-01T00:00:00.000Z by tester/);
    assert.match(text, /Remove with: upcall-broker request-key uninstall --file \/etc\/request-key.d\/x.conf/);
    assert.deepEqual(activeLines(text).map((l) => l.split('\t')[1]), ['dns_resolver', 'user']);
    assert.ok(isOurs(text));
    // request-key ignores lines starting with '#' or whitespace: every header line does
    for (const l of lines.filter((x) => !x.startsWith('create') && x !== '')) assert.ok(l.startsWith('#'), l);
  });

  test('every word request-key would mangle is refused', (t) => {
    const s = spec(tempDir(t));
    assert.throws(() => validateSpec({ ...s, socket: '/run/my broker.sock' }), isErr('E_BAD_REQUEST'));
    assert.throws(() => validateSpec({ ...s, socket: 'relative.sock' }), isErr('E_BAD_REQUEST'));
    assert.throws(() => validateSpec({ ...s, handler: '%k' }), isErr('E_BAD_REQUEST'));
    assert.throws(() => validateSpec({ ...s, match: 'a*b*' }), isErr('E_BAD_REQUEST'));
    assert.throws(() => validateSpec({ ...s, match: 'a b' }), isErr('E_BAD_REQUEST'));
    assert.throws(() => validateSpec({ ...s, types: [] }), isErr('E_BAD_REQUEST'));
    assert.throws(() => validateSpec({ ...s, types: ['user', 'user'] }), isErr('E_BAD_REQUEST'));
    assert.throws(() => validateSpec({ ...s, types: ['.request_key_auth'] }), isErr('E_BAD_REQUEST'));
    assert.throws(() => validateSpec({ ...s, types: ['us er'] }), isErr('E_BAD_REQUEST'));
    assert.throws(() => validateSpec({ ...s, fallback: { user: 'key.dns_resolver' } }), isErr('E_BAD_REQUEST'));
    assert.throws(() => validateSpec({ ...s, timeoutMs: 99 }), isErr('E_BAD_REQUEST'));
  });

  test('a test\'s --match only matches that test\'s names', () => {
    assert.notEqual(matchPattern('ubt123*', 'ubt123.svc.test'), null);
    assert.equal(matchPattern('ubt123*', 'svc.test'), null);
    assert.equal(matchPattern('ubt123*', 'ubt12.svc.test'), null);
  });
});

describe('install and uninstall (in a temp dir)', () => {
  test('install writes atomically, then is idempotent; a different spec rewrites', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'rk.d', 'upcall-broker.conf');
    const s = spec(dir);
    const first = await installRuleFile(file, s, 'test', new Date(0));
    assert.equal(first.changed, true);
    assert.equal(statSync(file).mode & 0o777, 0o644);
    const text = readFileSync(file, 'utf8');
    const second = await installRuleFile(file, s, 'test', new Date(1000));
    assert.equal(second.changed, false);
    assert.equal(readFileSync(file, 'utf8'), text, 'not even the timestamp changes');
    const third = await installRuleFile(file, { ...s, types: ['dns_resolver'] }, 'test');
    assert.equal(third.changed, true);
    assert.equal(third.lines.length, 1);
    assert.deepEqual(readdirSync(join(dir, 'rk.d')), ['upcall-broker.conf'], 'no temp file left');
  });

  test('install refuses to replace a file it did not write, and paths request-key would not read', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'someone-else.conf');
    writeFileSync(file, 'create user foo:* * /bin/true\n');
    await assert.rejects(installRuleFile(file, spec(dir), 'test'), isErr('E_CONFIG'));
    assert.equal(readFileSync(file, 'utf8'), 'create user foo:* * /bin/true\n');
    await assert.rejects(installRuleFile(join(dir, 'x.txt'), spec(dir), 'test'), isErr('E_BAD_REQUEST'));
    await assert.rejects(installRuleFile(join(dir, '.x.conf'), spec(dir), 'test'), isErr('E_BAD_REQUEST'));
    await assert.rejects(installRuleFile('relative.conf', spec(dir), 'test'), isErr('E_BAD_REQUEST'));
  });

  test('install refuses a handler that is not executable', async (t) => {
    const dir = tempDir(t);
    await assert.rejects(installRuleFile(join(dir, 'a.conf'), { ...spec(dir), handler: join(dir, 'missing') }, 'test'), isErr('E_CONFIG'));
  });

  test('uninstall removes exactly our file; a foreign file stays; absent is not an error', async (t) => {
    const dir = tempDir(t);
    const ours = join(dir, 'ours.conf');
    const foreign = join(dir, 'foreign.conf');
    await installRuleFile(ours, spec(dir), 'test');
    writeFileSync(foreign, '# my own rules\ncreate user x * /bin/true\n');
    assert.deepEqual(await uninstallRuleFile(ours), { file: ours, removed: true });
    assert.deepEqual(await uninstallRuleFile(ours), { file: ours, removed: false });
    await assert.rejects(uninstallRuleFile(foreign), isErr('E_CONFIG'));
    assert.equal((await readRuleFile(foreign))?.ours, false);
    assert.equal(await readRuleFile(ours), null);
  });
});

test('--fallback auto: keyutils\' handler for dns_resolver only, when installed', () => {
  assert.deepEqual(fallbacksFor(['dns_resolver', 'user'], 'auto', () => true), { dns_resolver: '/sbin/key.dns_resolver', user: null });
  assert.deepEqual(fallbacksFor(['dns_resolver'], 'auto', () => false), { dns_resolver: null });
  assert.deepEqual(fallbacksFor(['user'], 'none'), { user: null });
  assert.deepEqual(fallbacksFor(['user', 'logon'], '/usr/local/bin/x'), { user: '/usr/local/bin/x', logon: '/usr/local/bin/x' });
});
