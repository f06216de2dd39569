import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseAuthDescription, parseExpiry, parseProcKeys, parseProcKeysLine } from '../../src/upcall/request-key/proc-keys.js';

// Lines as Linux 6.18 printed them on this project's test machine.
const SAMPLE = [
  '027abab6 I------     1 perm 1f0b0000     0     0 keyring   .builtin_trusted_keys: empty',
  '0876b975 I--Q---     1 perm 1f3f0000     0 65534 keyring   _uid_ses.0: 1',
  '1585281b I--Q-N-     2   7s 3f010000     0     0 user      ubexp282631761:two',
  '01e1c542 I------    12 perm 1b010000     0     0 .request_ key:1585281b pid:2850 ci:1',
  '0f63c1a8 I--Q-N-     2   1m 3b010000     0     0 dns_resol ub-nonexistent-name.invalid',
  '1bd151b7 I--Q---     2   5s 3b010000     0     0 dns_resol localhost: 9',
  '275a17d6 I--Q---     2 perm 3f010000  1000  1000 user      with spaces: in description: 35',
].join('\n');

test('every line of a real /proc/keys parses; fields as the kernel printed them', () => {
  const keys = parseProcKeys(`${SAMPLE}\n`);
  assert.equal(keys.length, 7);
  const neg = keys[2]!;
  assert.equal(neg.serial, 0x1585281b);
  assert.equal(neg.negative, true);
  assert.equal(neg.instantiated, true);
  assert.equal(neg.type, 'user');
  assert.equal(neg.description, 'ubexp282631761:two');
  assert.deepEqual([neg.expiry.kind, neg.expiry.minSeconds, neg.expiry.maxSeconds], ['timed', 7, 8]);
  assert.equal(neg.perm, 0x3f010000);
  const auth = keys[3]!;
  assert.equal(auth.type, '.request_', 'the type column is %-9.9s');
  assert.deepEqual(parseAuthDescription(auth.description), { target: 0x1585281b, pid: 2850, calloutLength: 1 });
  const dns = keys[5]!;
  assert.equal(dns.type, 'dns_resol');
  assert.equal(dns.description, 'localhost: 9');
  assert.equal(dns.negative, false);
  assert.equal(keys[1]!.gid, 65534);
  assert.equal(keys[6]!.description, 'with spaces: in description: 35');
  assert.equal(keys[6]!.uid, 1000);
});

test('expiry: perm, expd, and each unit rounded down', () => {
  assert.equal(parseExpiry('perm').kind, 'perm');
  assert.equal(parseExpiry('expd').kind, 'expired');
  assert.deepEqual([parseExpiry('59s').minSeconds, parseExpiry('59s').maxSeconds], [59, 60]);
  assert.deepEqual([parseExpiry('4m').minSeconds, parseExpiry('4m').maxSeconds], [240, 300]);
  assert.equal(parseExpiry('2h').minSeconds, 7200);
  assert.equal(parseExpiry('3d').minSeconds, 3 * 86400);
  assert.equal(parseExpiry('1w').maxSeconds, 2 * 604800);
  assert.throws(() => parseExpiry('soon'));
});

test('lines of another shape are skipped, not misread', () => {
  assert.equal(parseProcKeysLine('garbage'), null);
  assert.equal(parseProcKeysLine('0000000g I------     1 perm 1f0b0000     0     0 keyring   x'), null);
  assert.deepEqual(parseProcKeys('\n\nnot a key\n'), []);
});

test('the auth description: pid and ci only while positive', () => {
  assert.equal(parseAuthDescription('key:1585281b'), null);
  assert.equal(parseAuthDescription('key:1585281b pid:2850 ci:1 extra'), null);
  assert.deepEqual(parseAuthDescription('key:7ffffffe pid:4194304 ci:4096'), { target: 0x7ffffffe, pid: 4194304, calloutLength: 4096 });
});
