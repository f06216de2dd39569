/**
 * RequestKeyOps' decision mapping (docs/request-key.md, "Failures"): which
 * requester, route, lookup and program outcome becomes which answer to the
 * kernel (instantiate, reject with which errno and timeout, negate, decline).
 * The router, the DNS service and the zygote are fakes; the requester is this
 * test process, opened through the real libc.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Authorizer } from '../../src/broker/authorizer.js';
import type { Context } from '../../src/broker/context-table.js';
import type { KeyRoute } from '../../src/broker/key-route.js';
import type { KeyRouter, Routed } from '../../src/broker/key-router.js';
import { type KeyDecision, RequestKeyOps } from '../../src/broker/request-key-ops.js';
import { UpcallDispatcher } from '../../src/broker/upcall-dispatcher.js';
import { UpcallSlots } from '../../src/broker/upcall-slots.js';
import { defaultConfig } from '../../src/common/defaults.js';
import { BrokerError } from '../../src/common/errors.js';
import { requestSignal } from '../../src/common/request-signal.js';
import type { BrokerConfig, RequestKeyRule } from '../../src/common/tokens.js';
import { NullLoggerFactory } from '../../src/logging/winston-logger-factory.js';
import type { Libc } from '../../src/ns/libc.js';
import type { Pidfd } from '../../src/ns/pidfd.js';
import { SystemClock } from '../../src/platform/node-platform.js';
import { RequestHandlerTable } from '../../src/server/request-handlers.js';
import type { PeerIdentity } from '../../src/server/peer-identity.js';
import { DEFAULT_LIMITS } from '../../src/server/limits.js';
import { Metrics } from '../../src/service/metrics.js';
import type { DnsService } from '../../src/upcall/dns/dns-service.js';
import type { UpcallOutcome, UpcallRequest, UpcallRunner } from '../../src/upcall/zygote-runner.js';
import { realLibc } from '../helpers/native.js';

type ProgramOutcome = Pick<UpcallOutcome, 'code' | 'signal' | 'stdout' | 'stderr' | 'timedOut'>;

interface Options {
  auth?: Authorizer;
  libc?: Libc;
  rules?: RequestKeyRule[];
  contextUpcalls?: number;
  route?: (type: string, description: string) => Routed;
  dns?: (ctx: Context, description: string) => Promise<unknown>;
  run?: (req: UpcallRequest) => Promise<ProgramOutcome>;
}

/** What a test sees of one RequestKeyOps: its logs and what its fakes were asked. */
interface Harness {
  handler: (params: unknown, peer: PeerIdentity) => Promise<unknown> | unknown;
  logs: NullLoggerFactory;
  routed: number;
  dnsCalls: number;
  runs: UpcallRequest[];
}

/** Host root on the admin socket, as the request-key handler connects. */
const hostRoot = { listener: 'admin', cred: { pid: process.pid, uid: 0, gid: 0 }, pidfd: null as unknown as Pidfd, hostRoot: true, sysAdmin: false } as PeerIdentity;

function opsWith(o: Options): Harness {
  const base = defaultConfig();
  const config = { ...base, limits: { ...DEFAULT_LIMITS, contextUpcalls: o.contextUpcalls ?? 16 }, requestKey: { ...base.requestKey, rules: o.rules ?? [] } } as BrokerConfig;
  const h: Harness = { handler: () => undefined, logs: new NullLoggerFactory(), routed: 0, dnsCalls: 0, runs: [] };
  const router = {
    route: (_requester: Pidfd, type: string, description: string) => {
      h.routed++;
      if (!o.route) throw new Error('this test routes nothing');
      return o.route(type, description);
    },
  } as unknown as KeyRouter;
  const dns = {
    resolve: (ctx: Context, description: string) => {
      h.dnsCalls++;
      if (!o.dns) throw new Error('this test resolves nothing');
      return o.dns(ctx, description);
    },
  } as unknown as DnsService;
  const runner = {
    run: async (req: UpcallRequest): Promise<UpcallOutcome> => {
      h.runs.push(req);
      if (!o.run) throw new Error('this test runs nothing');
      return { pid: 0, truncated: false, durationMs: 0, fields: {}, ...(await o.run(req)) };
    },
  } as unknown as UpcallRunner;
  const handlers = new RequestHandlerTable();
  const auth = o.auth ?? ({ isHostRoot: (p: PeerIdentity) => p === hostRoot } as unknown as Authorizer);
  const clock = new SystemClock();
  const dispatcher = new UpcallDispatcher(new UpcallSlots(config), new Metrics(), clock, h.logs);
  new RequestKeyOps(auth, router, dns, o.libc ?? realLibc(), clock, config, h.logs, dispatcher, runner).registerOps(handlers);
  h.handler = handlers.get('request-key')!.handler;
  return h;
}

/** Ask as the handler does: the key is asked for by this process (it is alive, its start time unchecked unless given). */
function ask(h: Harness, params: Record<string, unknown>): Promise<KeyDecision> {
  return Promise.resolve(h.handler({ keyId: 1, op: 'create', type: 'user', description: 'd', requesterPid: process.pid, uid: 0, gid: 0, ...params }, hostRoot)) as Promise<KeyDecision>;
}

/** The decision without its reason (free text for the handler's log; tests assert on what the kernel gets). */
function decisionOf(d: KeyDecision): Record<string, unknown> {
  const { reason: _reason, ...rest } = d;
  return rest;
}

/** Ids of the contexts released, in order. */
const released: string[] = [];

/** A live context; the zygote's target is this process (its uid_map is read for the program's %u). */
function contextOf(id: string, { host = false } = {}): Context {
  return {
    id, container: id, state: 'live', initPid: process.pid, initStartTime: 1, pidnsId: { dev: 4, ino: 4026532000 }, usernsId: { dev: 4, ino: 4026531837 },
    namespaces: { host, init: { pid: process.pid, isAlive: () => true } },
    release: () => void released.push(id),
    explain: async (err: unknown) => BrokerError.from(err),
  } as unknown as Context;
}

const routed = (route: KeyRoute, contexts: Context[]): Routed => ({ route, answerers: contexts.map((ctx) => ({ ctx, temporary: false })) });

const rule = { type: 'user', description: '*', callout: '*', program: '/bin/prog', args: ['%d'], stdin: 'none' as const, timeoutMs: 5000, maxPayloadBytes: 8, expirySeconds: 300 };
const walk: KeyRoute = { route: 'walk', target: { kind: 'walk' }, capExpiry: false };
const okDns = { payload: Buffer.from('192.0.2.1\0'), text: '192.0.2.1', expirySeconds: 600, dnserror: null, status: 'ok', sources: [{ from: 'hosts' }], nameservers: [], search: [], durationMs: 1 };

describe('who may ask, and what is asked', () => {
  test('a peer that is not host root on the admin socket is refused E_PERMISSION, with an audit line', async () => {
    const h = opsWith({ auth: { isHostRoot: () => false } as unknown as Authorizer });
    await assert.rejects(ask(h, {}), { code: 'E_PERMISSION' });
    assert.ok(h.logs.lines.some((l) => l.level === 'audit' && l.message === 'refused' && l.meta?.['op'] === 'request-key'));
    assert.equal(h.routed, 0, 'nothing was looked at');
  });

  test('malformed params are E_BAD_REQUEST naming the field, before anything is looked at', async () => {
    const h = opsWith({});
    await assert.rejects(ask(h, { requesterPid: 0 }), (e: BrokerError) => e.code === 'E_BAD_REQUEST' && e.details['field'] === 'params.requesterPid');
    await assert.rejects(ask(h, { extra: 1 }), { code: 'E_BAD_REQUEST' });
    await assert.rejects(ask(h, { callout: 'a', calloutBase64: 'YQ==' }), { code: 'E_BAD_REQUEST' });
    assert.equal(h.routed, 0);
  });

  test('an operation other than create is negated for negativeTimeoutSeconds', async () => {
    const d = await ask(opsWith({}), { op: 'update' });
    assert.deepEqual(decisionOf(d), { action: 'negate', timeoutSeconds: 60 });
  });
});

describe('the requester', () => {
  test('gone (pidfd_open ESRCH): rejected ESRCH for retryTimeoutSeconds', async () => {
    const libc = { pidfdOpen: () => -1, errno: () => 3 } as unknown as Libc;
    assert.deepEqual(decisionOf(await ask(opsWith({ libc }), {})), { action: 'reject', errno: 3, errnoName: 'ESRCH', timeoutSeconds: 1 });
  });

  test('a thread (pidfd_open EINVAL): opened again with PIDFD_THREAD', async () => {
    const real = realLibc();
    const flags: number[] = [];
    let errno = 0;
    const libc: Libc = { ...real, pidfdOpen: (pid, f) => (flags.push(f), f === 0 ? ((errno = 22), -1) : real.pidfdOpen(pid, 0)), errno: () => errno };
    const h = opsWith({ libc, route: () => routed(walk, []) });
    await ask(h, {});
    assert.deepEqual(flags, [0, 0o200]);
    assert.equal(h.routed, 1);
  });

  test('its pid naming another process than the one the handler saw: rejected ESRCH, not routed', async () => {
    const h = opsWith({});
    assert.deepEqual(decisionOf(await ask(h, { requesterStartTime: 1 })), { action: 'reject', errno: 3, errnoName: 'ESRCH', timeoutSeconds: 1 });
    assert.equal(h.routed, 0);
  });
});

describe('the walk and the route', () => {
  for (const [code, errno, timeout] of [['E_NS_NOT_OWNED', 'EPERM', 60], ['E_INIT_EXITED', 'ESRCH', 1], ['E_NO_PROCESS', 'ESRCH', 1]] as const) {
    test(`a walk that fails ${code} is rejected ${errno} for ${timeout} s`, async () => {
      const h = opsWith({ route: () => { throw new BrokerError(code, 'x'); } });
      assert.deepEqual(decisionOf(await ask(h, {})), { action: 'reject', errno: errno === 'EPERM' ? 1 : 3, errnoName: errno, timeoutSeconds: timeout });
    });
  }

  test('no context owns the requester\'s network namespace: negated, with the route named', async () => {
    const h = opsWith({ route: () => routed({ route: 'netns-decline', target: { kind: 'decline' }, capExpiry: false }, []) });
    const d = await ask(h, { type: 'dns_resolver' });
    assert.deepEqual(decisionOf(d), { action: 'negate', timeoutSeconds: 60, route: 'netns-decline' });
    assert.equal(h.dnsCalls, 0);
  });

  test('a host context with hostRequests "decline" declines (the handler falls back to keyutils)', async () => {
    const ctx = contextOf('host', { host: true });
    const h = opsWith({ route: () => routed(walk, [ctx]) });
    assert.deepEqual(decisionOf(await ask(h, { type: 'dns_resolver' })), { action: 'decline', context: 'host', host: true, route: 'walk' });
    assert.equal(h.dnsCalls, 0);
  });

  test('a temporary context is released once answered, a registered one is not', async () => {
    const [temp, kept] = [contextOf('t'), contextOf('k')];
    released.length = 0;
    const h = opsWith({ route: () => ({ route: walk, answerers: [{ ctx: temp, temporary: true }] }), dns: async () => okDns });
    await ask(h, { type: 'dns_resolver' });
    const h2 = opsWith({ route: () => ({ route: walk, answerers: [{ ctx: kept, temporary: false }] }), dns: async () => okDns });
    await ask(h2, { type: 'dns_resolver' });
    assert.deepEqual(released, ['t']);
  });
});

describe('dns_resolver keys', () => {
  test('an answer instantiates the key with the payload and the lookup\'s expiry', async () => {
    const h = opsWith({ route: () => routed(walk, [contextOf('c1')]), dns: async () => okDns });
    const d = await ask(h, { type: 'dns_resolver', description: 'files.test' });
    assert.deepEqual(decisionOf(d), { action: 'instantiate', payloadBase64: okDns.payload.toString('base64'), expirySeconds: 600, context: 'c1', host: false, route: 'walk' });
  });

  test('a DNS failure rejects with the lookup\'s #dnserror and its expiry, as keyutils does', async () => {
    const h = opsWith({ route: () => routed(walk, [contextOf('c1')]), dns: async () => ({ ...okDns, dnserror: 61, expirySeconds: 5, status: 'nxdomain' }) });
    assert.deepEqual(decisionOf(await ask(h, { type: 'dns_resolver' })), { action: 'reject', errno: 61, errnoName: 'ENODATA', timeoutSeconds: 5, context: 'c1', host: false, route: 'walk' });
  });

  for (const [code, errno, name, timeout] of [
    ['E_UPCALL_TIMEOUT', 11, 'EAGAIN', 1], ['E_BUSY', 11, 'EAGAIN', 1], ['E_BAD_REQUEST', 22, 'EINVAL', 1],
    ['E_SPAWN', 129, 'EKEYREJECTED', 1], ['E_INTERNAL', 129, 'EKEYREJECTED', 1],
  ] as const) {
    test(`a lookup that fails ${code} is rejected ${name} for ${timeout} s`, async () => {
      const h = opsWith({ route: () => routed(walk, [contextOf('c1')]), dns: async () => { throw new BrokerError(code, 'x'); } });
      assert.deepEqual(decisionOf(await ask(h, { type: 'dns_resolver' })), { action: 'reject', errno, errnoName: name, timeoutSeconds: timeout, context: 'c1', host: false, route: 'walk' });
    });
  }

  test('a lookup that fails E_NOT_FOUND is negated', async () => {
    const h = opsWith({ route: () => routed(walk, [contextOf('c1')]), dns: async () => { throw new BrokerError('E_NOT_FOUND', 'x'); } });
    assert.equal(decisionOf(await ask(h, { type: 'dns_resolver' })).action, 'negate');
  });

  test('a container at its upcall limit gets EAGAIN at once; another container does not', async () => {
    const finish: Array<() => void> = [];
    const h = opsWith({ contextUpcalls: 1, route: (_type, d) => routed(walk, [contextOf(d === 'b' ? 'other' : 'c1')]), dns: () => new Promise((r) => finish.push(() => r(okDns))) });
    const first = ask(h, { type: 'dns_resolver', description: 'a' });
    assert.deepEqual(decisionOf(await ask(h, { type: 'dns_resolver', description: 'a' })).errnoName, 'EAGAIN');
    const other = ask(h, { type: 'dns_resolver', description: 'b' });
    assert.equal(h.dnsCalls, 2, 'the other container\'s lookup started');
    for (const f of finish) f();
    assert.deepEqual([decisionOf(await first).action, decisionOf(await other).action], ['instantiate', 'instantiate']);
    // The slot is free again.
    finish.length = 0;
    const again = ask(h, { type: 'dns_resolver', description: 'a' });
    assert.equal(h.dnsCalls, 3);
    finish[0]!();
    assert.equal(decisionOf(await again).action, 'instantiate');
  });

  test('no answer within the handler\'s budget: rejected EAGAIN, and the lookup is told to stop', async () => {
    let signal: AbortSignal | undefined;
    const h = opsWith({ route: () => routed(walk, [contextOf('c1')]), dns: () => ((signal = requestSignal.getStore()), new Promise(() => undefined)) });
    assert.deepEqual(decisionOf(await ask(h, { type: 'dns_resolver', timeoutMs: 1 })), { action: 'reject', errno: 11, errnoName: 'EAGAIN', timeoutSeconds: 1 });
    assert.equal(signal?.aborted, true);
  });

  test('several contexts that agree instantiate with the shortest expiry; that disagree reject ENOKEY', async () => {
    const several: KeyRoute = { route: 'kthread-several', target: { kind: 'contexts', ids: ['a', 'b'] }, capExpiry: false };
    const expiries: Record<string, number> = { a: 600, b: 30 };
    const agree = opsWith({ route: () => routed(several, [contextOf('a'), contextOf('b')]), dns: async (ctx) => ({ ...okDns, expirySeconds: expiries[ctx.id]! }) });
    assert.deepEqual(decisionOf(await ask(agree, { type: 'dns_resolver' })), { action: 'instantiate', payloadBase64: okDns.payload.toString('base64'), expirySeconds: 30, context: 'a,b', host: false, route: 'kthread-agreed' });
    const disagree = opsWith({ route: () => routed(several, [contextOf('a'), contextOf('b')]), dns: async (ctx) => ({ ...okDns, payload: Buffer.from(ctx.id) }) });
    assert.deepEqual(decisionOf(await ask(disagree, { type: 'dns_resolver' })), { action: 'reject', errno: 126, errnoName: 'ENOKEY', timeoutSeconds: 1, context: 'a,b', host: false, route: 'kthread-ambiguous' });
  });

  test('a kernel thread\'s key is capped to kernelThreadMaxExpirySeconds, answer or failure', async () => {
    const capped: KeyRoute = { route: 'kthread-registration', target: { kind: 'contexts', ids: ['a'] }, capExpiry: true };
    const ok = opsWith({ route: () => routed(capped, [contextOf('a')]), dns: async () => okDns });
    assert.equal(decisionOf(await ask(ok, { type: 'dns_resolver' })).expirySeconds, 10);
    const failed = opsWith({ route: () => routed(capped, [contextOf('a')]), dns: async () => ({ ...okDns, dnserror: 61, expirySeconds: 600 }) });
    assert.equal(decisionOf(await ask(failed, { type: 'dns_resolver' })).timeoutSeconds, 10);
  });
});

describe('keys built by a rule\'s program', () => {
  const ruled = (run: Parameters<typeof opsWith>[0]['run']) => opsWith({ rules: [rule], route: () => routed(walk, [contextOf('c1')]), run });

  test('no rule matches: negated', async () => {
    const h = opsWith({ route: () => routed(walk, [contextOf('c1')]) });
    assert.deepEqual(decisionOf(await ask(h, { type: 'user' })), { action: 'negate', timeoutSeconds: 60, context: 'c1', host: false, route: 'walk' });
  });

  test('exit status 0: its stdout is the payload, the rule\'s expiry the key\'s', async () => {
    const h = ruled(async () => ({ code: 0, signal: null, stdout: Buffer.from('secret'), stderr: Buffer.alloc(0), timedOut: false }));
    const d = decisionOf(await ask(h, { type: 'user', description: 'k' }));
    assert.deepEqual(d, { action: 'instantiate', payloadBase64: Buffer.from('secret').toString('base64'), expirySeconds: 300, context: 'c1', host: false, route: 'walk' });
    assert.deepEqual(h.runs[0]!.argv, ['/bin/prog', 'k']);
  });

  test('stdout over maxPayloadBytes: rejected EMSGSIZE for negativeTimeoutSeconds', async () => {
    const h = ruled(async () => ({ code: 0, signal: null, stdout: Buffer.alloc(9), stderr: Buffer.alloc(0), timedOut: false }));
    assert.deepEqual(decisionOf(await ask(h, { type: 'user' })), { action: 'reject', errno: 90, errnoName: 'EMSGSIZE', timeoutSeconds: 60, context: 'c1', host: false, route: 'walk' });
  });

  test('killed at its timeout: rejected ETIMEDOUT for retryTimeoutSeconds', async () => {
    const h = ruled(async () => ({ code: null, signal: 'SIGKILL', stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), timedOut: true }));
    assert.deepEqual(decisionOf(await ask(h, { type: 'user' })), { action: 'reject', errno: 110, errnoName: 'ETIMEDOUT', timeoutSeconds: 1, context: 'c1', host: false, route: 'walk' });
  });

  test('a failing exit status is negated, its last stderr line quoted in the reason', async () => {
    const h = ruled(async () => ({ code: 3, signal: null, stdout: Buffer.alloc(0), stderr: Buffer.from('first\nno such key\n'), timedOut: false }));
    const d = await ask(h, { type: 'user' });
    assert.equal(d.action, 'negate');
    assert.match(d.reason, /exit status 3: no such key$/);
  });

  test('a program the container does not have, or cannot execute, is negated', async () => {
    const missing = ruled(async () => { throw new BrokerError('E_NOT_FOUND', 'x'); });
    assert.match((await ask(missing, { type: 'user' })).reason, /does not exist/);
    const noexec = ruled(async () => { throw new BrokerError('E_SPAWN', 'x', { nativeCode: 'E_EXEC' }); });
    const d = await ask(noexec, { type: 'user' });
    assert.equal(d.action, 'negate');
    assert.match(d.reason, /cannot be executed/);
  });

  test('a context whose init has exited is rejected ESRCH without running anything', async () => {
    const gone = contextOf('c1');
    (gone as { namespaces: unknown }).namespaces = null;
    const h = opsWith({ rules: [rule], route: () => routed(walk, [gone as Context]) });
    assert.deepEqual(decisionOf(await ask(h, { type: 'user' })).errnoName, 'ESRCH');
    assert.equal(h.runs.length, 0);
  });
});

test('every answer is one audit line naming the action, the context and the route, written once the answer is out', async () => {
  const h = opsWith({ route: () => routed(walk, [contextOf('c1')]), dns: async () => okDns });
  await ask(h, { type: 'dns_resolver' });
  assert.equal(h.logs.lines.filter((l) => l.level === 'audit').length, 0, 'the answer does not wait for its audit line');
  await new Promise((resolve) => setImmediate(resolve));
  const audit = h.logs.lines.filter((l) => l.level === 'audit');
  assert.equal(audit.length, 1);
  assert.deepEqual([audit[0]!.message, audit[0]!.meta?.['action'], audit[0]!.meta?.['context'], audit[0]!.meta?.['route']], ['request-key', 'instantiate', 'c1', 'walk']);
  assert.equal(hostRoot.listener, 'admin');
});
