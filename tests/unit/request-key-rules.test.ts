import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BrokerError } from '../../src/common/errors.js';
import { expandArgs, mapIdInto, matchPattern, type Macros, patternError, selectRule, templateError } from '../../src/upcall/request-key/rules.js';

describe('matchPattern: keyutils 1.6.3 request-key.c match()', () => {
  test('exact patterns match exactly, with wildness 0', () => {
    assert.equal(matchPattern('user', 'user'), 0);
    assert.equal(matchPattern('user', 'users'), null);
    assert.equal(matchPattern('user', 'use'), null);
    assert.equal(matchPattern('', ''), 0);
  });

  test('one asterisk matches any run; wildness is the number of bytes it skipped', () => {
    assert.equal(matchPattern('*', ''), 0);
    assert.equal(matchPattern('*', 'abc'), 3);
    assert.equal(matchPattern('debug:*', 'debug:'), 0);
    assert.equal(matchPattern('debug:*', 'debug:1234'), 4);
    assert.equal(matchPattern('debug:*', 'debu'), null);
    assert.equal(matchPattern('*.test', 'svc.test'), 3);
    assert.equal(matchPattern('*.test', 'svc.tesx'), null);
    assert.equal(matchPattern('a*z', 'az'), 0);
    assert.equal(matchPattern('a*z', 'abcz'), 2);
    assert.equal(matchPattern('a*z', 'abcy'), null);
    // head and tail may not overlap: "ab*ba" against "aba" (shorter than the pattern without '*')
    assert.equal(matchPattern('ab*ba', 'aba'), null);
    assert.equal(matchPattern('ab*ba', 'abba'), 0);
  });

  test('wildness counts bytes, as the C code does', () => {
    assert.equal(matchPattern('x*', 'xé'), 2);
  });

  test('a second asterisk is a literal character (request-key only looks for the first)', () => {
    assert.equal(matchPattern('a*b*', 'axxb*'), 2);
    assert.equal(matchPattern('a*b*', 'axxbc'), null);
  });
});

describe('selectRule: least wild wins, field by field; ties go to the first', () => {
  const rule = (type: string, description: string, callout = '*', tag = '') => ({ type, description, callout, tag });

  test('the description decides before the callout', () => {
    const rules = [rule('user', '*', 'exact', 'any-desc'), rule('user', 'debug:*', '*', 'debug')];
    assert.equal(selectRule(rules, { type: 'user', description: 'debug:1', callout: 'exact' })?.rule.tag, 'debug');
  });

  test('the callout breaks a description tie', () => {
    const rules = [rule('user', 'debug:*', '*', 'any'), rule('user', 'debug:*', 'negate', 'negate')];
    assert.equal(selectRule(rules, { type: 'user', description: 'debug:x', callout: 'negate' })?.rule.tag, 'negate');
  });

  test('a full tie keeps the first rule', () => {
    const rules = [rule('user', 'a*', '*', 'first'), rule('user', 'a*', '*', 'second')];
    const r = selectRule(rules, { type: 'user', description: 'abc', callout: '' });
    assert.equal(r?.rule.tag, 'first');
    assert.equal(r?.index, 0);
    assert.deepEqual(r?.wildness, [0, 0, 2, 0]);
  });

  test('an exact description beats any pattern; no match gives null', () => {
    const rules = [rule('user', 'x*'), rule('user', 'xyz', '*', 'exact')];
    assert.equal(selectRule(rules, { type: 'user', description: 'xyz', callout: 'c' })?.rule.tag, 'exact');
    assert.equal(selectRule(rules, { type: 'logon', description: 'xyz', callout: 'c' }), null);
    assert.equal(selectRule([], { type: 'user', description: 'xyz', callout: 'c' }), null);
  });

  test('how the installed request-key.d line beats the stock dns_resolver line', () => {
    // ours (read first, from request-key.d) vs /etc/request-key.conf's "create dns_resolver * * /sbin/key.dns_resolver %k"
    const ours = rule('dns_resolver', 'ubt1234*', '*', 'ours');
    const stock = rule('dns_resolver', '*', '*', 'stock');
    assert.equal(selectRule([ours, stock], { type: 'dns_resolver', description: 'ubt1234.svc.test', callout: '' })?.rule.tag, 'ours');
    assert.equal(selectRule([ours, stock], { type: 'dns_resolver', description: 'other.test', callout: '' })?.rule.tag, 'stock');
    const oursAll = rule('dns_resolver', '*', '*', 'ours');
    assert.equal(selectRule([oursAll, stock], { type: 'dns_resolver', description: 'x', callout: '' })?.rule.tag, 'ours', 'a tie goes to the first read');
  });
});

describe('macro expansion', () => {
  const m: Macros = { o: 'create', k: '42', t: 'user', d: 'desc with space', c: 'info', u: '0', g: '0', T: '0', P: '0', S: '123' };

  test('whole-argument macros, %% escapes, literals untouched', () => {
    assert.deepEqual(expandArgs(['%o', '%k', '%t', '%d', '%c', '%u', '%g', '%T', '%P', '%S'], m),
      ['create', '42', 'user', 'desc with space', 'info', '0', '0', '0', '0', '123']);
    assert.deepEqual(expandArgs(['--key=%k', '%%k', '%%%d', 'plain'], m), ['--key=%k', '%k', '%%d', 'plain']);
    assert.deepEqual(expandArgs([], m), []);
  });

  test('unknown macros and key substitution are configuration errors', () => {
    assert.equal(templateError('%x'), '"%x": unknown macro (use %o %k %t %d %c %u %g %T %P %S, or %% for a literal %)');
    assert.match(templateError('%{user:foo}') ?? '', /key substitution/);
    assert.match(templateError('%') ?? '', /missing macro/);
    assert.match(templateError('%kk') ?? '', /unknown macro/);
    assert.equal(templateError('%%'), null);
    assert.equal(templateError('x%k'), null);
    assert.throws(() => expandArgs(['%z'], m), (e: unknown) => e instanceof BrokerError && e.code === 'E_CONFIG');
  });
});

describe('patterns usable in request-key.conf', () => {
  test('refused: empty, whitespace, two asterisks', () => {
    assert.equal(patternError('ubt*'), null);
    assert.equal(patternError('*'), null);
    assert.match(patternError('') ?? '', /empty/);
    assert.match(patternError('a b') ?? '', /whitespace/);
    assert.match(patternError('a\tb') ?? '', /whitespace/);
    assert.match(patternError('a*b*') ?? '', /more than one/);
  });
});

describe('mapIdInto: a host uid as a container sees it', () => {
  const map = '         0     200000      65536\n     65536    1000000         10\n';
  test('mapped, unmapped and negative ids', () => {
    assert.equal(mapIdInto(map, 200000), 0);
    assert.equal(mapIdInto(map, 265535), 65535);
    assert.equal(mapIdInto(map, 1000005), 65541);
    assert.equal(mapIdInto(map, 0), 65534);
    assert.equal(mapIdInto(map, 265536), 65534);
    assert.equal(mapIdInto(map, -1), 65534);
    assert.equal(mapIdInto('0 0 4294967295\n', 1234), 1234, 'the initial user namespace maps everything');
  });
});
