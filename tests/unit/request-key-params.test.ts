/**
 * request-key's params: the plain check taken before the zod schema accepts
 * only what the schema accepts, with the same result, and it does accept what
 * the handler sends. Every field of a valid request is varied over edge values
 * (in range, at the bounds, past them, other types), one at a time and in pairs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkedRequestKeyParams, parseRequestKeyParams, RequestKeyParams } from '../../src/broker/request-key-params.js';
import { BrokerError } from '../../src/common/errors.js';

/** What upcall-request-key sends (native-bindings/request-key/). */
const handler = {
  keyId: 271328003, op: 'create', type: 'dns_resolver', description: 'files.example.test', callout: '',
  requesterPid: 4242, requesterStartTime: 123456789, uid: 0, gid: 0, keyrings: { thread: 0, process: 0, session: 839736558 }, timeoutMs: 29000,
};

const ints = [0, 1, -1, -2, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53, 600_000, 600_001, 1.5, NaN, Infinity, -Infinity, '1', null, true, undefined, [], {}];
const strings = ['', 'a', 'create', 'x'.repeat(32), 'x'.repeat(33), 'x'.repeat(64), 'x'.repeat(65), 'x'.repeat(4096), 'x'.repeat(4097), 'x'.repeat(60_000), 'x'.repeat(60_001), 1, null, undefined, [], {}];
const keyrings = [{ thread: 0, process: 0, session: 0 }, { thread: -5, process: 2 ** 40, session: 1 }, { thread: 0, process: 0 }, { thread: 0, process: 0, session: 0, extra: 1 },
  { thread: 0, process: 0, other: 0 }, { thread: 1.5, process: 0, session: 0 }, { thread: '0', process: 0, session: 0 }, { thread: 2 ** 60, process: 0, session: 0 }, null, [], 7, undefined];
const values: Record<string, unknown[]> = {
  keyId: ints, requesterPid: ints, requesterStartTime: ints, uid: ints, gid: ints, timeoutMs: ints,
  op: strings, type: strings, description: strings, callout: strings, calloutBase64: strings, keyrings,
};

function variants(): unknown[] {
  const out: unknown[] = [handler, {}, null, 'params', [], 7, { ...handler, extra: 1 }, JSON.parse(`{"__proto__": {"x": 1}, "keyId": 1}`),
    JSON.parse(JSON.stringify({ ...handler, __proto__: null })), { ...handler, callout: undefined, calloutBase64: 'AAEC' }, { ...handler, calloutBase64: 'AAEC' }];
  const drop = (k: string) => Object.fromEntries(Object.entries(handler).filter(([key]) => key !== k));
  for (const k of Object.keys(handler)) out.push(drop(k));
  for (const [k, vs] of Object.entries(values)) for (const v of vs) out.push({ ...handler, [k]: v });
  // pairs: every value of one numeric field with every value of a string field, a sample
  for (const v of ints) for (const s of strings.slice(0, 9)) out.push({ ...handler, keyId: v, description: s });
  return out;
}

test('the plain check accepts only what the schema accepts, and gives what the schema gives', () => {
  let fast = 0;
  for (const v of variants()) {
    const quick = checkedRequestKeyParams(v);
    const schema = RequestKeyParams.safeParse(v);
    if (quick === null) continue;
    fast++;
    assert.ok(schema.success, `accepted by the plain check only: ${JSON.stringify(v)?.slice(0, 200)}`);
    assert.deepEqual(quick, schema.data);
  }
  assert.ok(fast > 100, `the plain check took ${fast} of them`);
});

test('what the handler sends takes the plain check; the rest gets the schema\'s answer and message', () => {
  assert.deepEqual(checkedRequestKeyParams(handler), handler);
  assert.notEqual(checkedRequestKeyParams(handler), handler, 'a copy, not the request object');
  assert.deepEqual(checkedRequestKeyParams({ ...handler, requesterStartTime: undefined, keyrings: undefined, timeoutMs: undefined }), { ...handler, requesterStartTime: undefined, keyrings: undefined, timeoutMs: undefined });
  for (const v of variants()) {
    const schema = RequestKeyParams.safeParse(v);
    let got: unknown;
    try {
      got = parseRequestKeyParams(v);
    } catch (err) {
      assert.equal(schema.success, false, JSON.stringify(v)?.slice(0, 200));
      assert.equal(BrokerError.from(err).code, 'E_BAD_REQUEST');
      continue;
    }
    assert.ok(schema.success, JSON.stringify(v)?.slice(0, 200));
    assert.deepEqual(got, schema.data);
  }
});
