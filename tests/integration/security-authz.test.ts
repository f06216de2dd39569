/**
 * The authorization matrix (issue 9, part 3): every request type, from every
 * kind of caller, against its own and a foreign registration. The expected
 * answers are the table in docs/security.md ("Authorization matrix"): this
 * test reads that table and checks every cell against a real broker, so the
 * document and the behaviour cannot drift apart.
 *
 * Each caller is its own process running tests/helpers/batch-client.js:
 * host root, host non-root (setpriv), container root, container non-root, a
 * nested pid namespace in the container (same user namespace), a child user
 * namespace in the container (same pid namespace), and a nested container
 * (own user and pid namespaces).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../../src/common/paths.js';
import type { RegistrationInfo } from '../../src/common/types.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { cliIn, mountTmpfs } from '../helpers/in-container.js';
import { admin, batchArgv } from '../helpers/reliability.js';
import { Testbed, type TestContainer } from '../testbed/index.js';

const run = promisify(execFile);
const broker = new BrokerProcess();
const bed = new Testbed();
let a: TestContainer;
let b: TestContainer;

/** The cells of one row, in the order the batch sends them. */
const CELLS = ['ping', 'register', 'list', 'show own', 'show foreign', 'exec own', 'exec foreign', 'resolve own',
  'resolve foreign', 'status', 'request-key', 'unregister foreign', 'unregister own'] as const;
type Cell = typeof CELLS[number];

/** docs/security.md's matrix: row label -> cell -> expected answer. */
function documentedMatrix(): Map<string, Record<Cell, string>> {
  const doc = readFileSync(join(PACKAGE_ROOT, 'docs', 'security.md'), 'utf8');
  const m = /<!-- authz-matrix:start -->([\s\S]*?)<!-- authz-matrix:end -->/.exec(doc);
  assert.ok(m, 'docs/security.md has the authorization matrix between its markers');
  const rows = m[1]!.trim().split('\n').map((l) => l.split('|').slice(1, -1).map((x) => x.trim().replace(/`/g, '')));
  const [head, , ...body] = rows;
  const columns = head!.slice(2);
  assert.deepEqual([...columns].sort(), [...CELLS].sort(), 'the matrix has one column per request type and target');
  return new Map(body.map((r) => [`${r[0]} @ ${r[1]}`, Object.fromEntries(columns.map((c, i) => [c, r[i + 2]!])) as Record<Cell, string>]));
}

interface Targets {
  /** A registration in the caller's own context, to look at (null: the caller registers its own first). */
  own: string | null;
  /** One in its own context it may destroy (null: the one it registered). */
  ownToUnregister: string | null;
  /** One in another context (another container, or the parent container for a nested one). */
  foreign: string;
  foreignToUnregister: string;
}

/** The batch of requests every caller sends, one per cell. */
function requests(t: Targets, requesterPid: number) {
  const own = t.own ?? '$registered';
  return [
    { op: 'ping' },
    { op: 'register', params: { mountpoint: '/' } },
    { op: 'list' },
    { op: 'show', params: { id: own } },
    { op: 'show', params: { id: t.foreign } },
    { op: 'exec', params: { mount: own, argv: ['true'] } },
    { op: 'exec', params: { mount: t.foreign, argv: ['true'] } },
    { op: 'resolve', params: { mount: own, description: 'localhost', callout: 'ipv4' } },
    { op: 'resolve', params: { mount: t.foreign, description: 'localhost', callout: 'ipv4' } },
    { op: 'status' },
    { op: 'request-key', params: { keyId: 12345, op: 'create', type: 'user', description: 'ub-authz-probe', requesterPid, uid: 0, gid: 0 } },
    { op: 'unregister', params: { id: t.foreignToUnregister } },
    { op: 'unregister', params: { id: t.ownToUnregister ?? '$registered' } },
  ];
}

interface Answer { ok: boolean; code?: string; result?: unknown }

/** What a cell's answer says, in the matrix's terms ("list" as all / own / none of the two targets). */
function classify(cell: Cell, ans: Answer, t: Targets, registered: string | null): string {
  if (!ans.ok) return ans.code ?? '?';
  if (cell !== 'list') return 'ok';
  const ids = new Set((ans.result as RegistrationInfo[]).map((r) => r.id));
  const own = ids.has(t.own ?? registered ?? '');
  const foreign = ids.has(t.foreign);
  return own && foreign ? 'all' : own ? 'own' : foreign ? 'foreign!' : 'none';
}

before(async () => {
  await broker.start();
  [a, b] = [await bed.create({ name: 'aza' }), await bed.create({ name: 'azb' })];
  await mountTmpfs(a, '/mnt/z');
  await mountTmpfs(b, '/mnt/z');
});
after(async () => {
  try {
    await bed.dispose();
  } finally {
    await broker.dispose();
  }
});

async function registerIn(c: TestContainer): Promise<string> {
  const r = await cliIn<RegistrationInfo>(c, ['register', '--socket', broker.tenantSocket, '--mount', '/mnt/z']);
  assert.equal(r.code, 0, JSON.stringify(r.json));
  return r.json.id;
}
const registerHost = async () => (await admin<RegistrationInfo>(broker, 'register', { mountpoint: '/' })).id;

/** How to run the batch as each caller; `spec` is the batch client's JSON. */
type Runner = (spec: unknown) => Promise<string>;
const onHost = (prefix: string[], socket: () => string): Runner => async (spec) => {
  const [cmd, ...args] = [...prefix, ...batchArgv(socket(), spec)];
  return (await run(cmd!, args, { timeout: 30_000 })).stdout;
};
const inA = (prefix: string[]): Runner => async (spec) => {
  const r = await a.exec([...prefix, ...batchArgv(broker.tenantSocket, spec)], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
};
const handleInA = (start: (argv: string[]) => Promise<{ wait(): Promise<{ code: number | null; stdout: string; stderr: string }> }>): Runner => async (spec) => {
  const r = await (await start(batchArgv(broker.tenantSocket, spec))).wait();
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
};
const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

test('authorization matrix: every request type from every kind of caller, own and foreign (docs/security.md)', async () => {
  const expected = documentedMatrix();
  const hostOwn = await registerHost();
  const aOwn = await registerIn(a);
  const bForeign = await registerIn(b);
  const callers: Record<string, { run: Runner; targets: () => Promise<Targets> }> = {
    'host root @ admin': {
      run: onHost([], () => broker.adminSocket),
      targets: async () => ({ own: hostOwn, ownToUnregister: await registerHost(), foreign: bForeign, foreignToUnregister: await registerIn(b) }),
    },
    'host non-root @ admin': {
      run: onHost(NOBODY, () => broker.adminSocket),
      targets: async () => ({ own: hostOwn, ownToUnregister: hostOwn, foreign: bForeign, foreignToUnregister: bForeign }),
    },
    'host non-root @ tenant': {
      run: onHost(NOBODY, () => broker.tenantSocket),
      targets: async () => ({ own: hostOwn, ownToUnregister: hostOwn, foreign: bForeign, foreignToUnregister: bForeign }),
    },
    'container root @ tenant': {
      run: inA([]),
      targets: async () => ({ own: aOwn, ownToUnregister: await registerIn(a), foreign: bForeign, foreignToUnregister: bForeign }),
    },
    'container non-root @ tenant': {
      run: inA(['setpriv', '--reuid=1000', '--regid=1000', '--clear-groups', '--inh-caps=-all']),
      targets: async () => ({ own: aOwn, ownToUnregister: aOwn, foreign: bForeign, foreignToUnregister: bForeign }),
    },
    'nested pid namespace @ tenant': {
      run: handleInA((argv) => a.startNestedPidns(argv)),
      targets: async () => ({ own: aOwn, ownToUnregister: await registerIn(a), foreign: bForeign, foreignToUnregister: bForeign }),
    },
    'child user namespace @ tenant': {
      run: handleInA((argv) => a.startChildUserns(argv)),
      targets: async () => ({ own: aOwn, ownToUnregister: aOwn, foreign: bForeign, foreignToUnregister: bForeign }),
    },
    'nested container @ tenant': {
      run: handleInA((argv) => a.spawn(['unshare', '--user', '--map-root-user', '--pid', '--fork', '--mount-proc', ...argv])),
      // Its own context is the one it registers itself; its parent container's is foreign to it.
      targets: async () => ({ own: null, ownToUnregister: null, foreign: aOwn, foreignToUnregister: aOwn }),
    },
  };
  assert.deepEqual([...expected.keys()].sort(), Object.keys(callers).sort(), 'one documented row per caller the test can play');

  const mismatches: string[] = [];
  let checked = 0;
  for (const [label, caller] of Object.entries(callers)) {
    const t = await caller.targets();
    const answers = JSON.parse(await caller.run({ mode: 'batch', requests: requests(t, a.initPid) })) as Answer[];
    assert.equal(answers.length, CELLS.length, label);
    const registered = answers[1]!.ok ? (answers[1]!.result as { id: string }).id : null;
    CELLS.forEach((cell, i) => {
      const got = classify(cell, answers[i]!, t, registered);
      const want = expected.get(label)![cell];
      checked++;
      if (got !== want) mismatches.push(`${label} / ${cell}: expected ${want}, got ${got}`);
    });
    // Whatever a cell registered on the side is removed, so the next row starts from the same state.
    const ownGone = t.ownToUnregister === null && answers[CELLS.indexOf('unregister own')]!.ok;
    if (registered && !ownGone) await admin(broker, 'unregister', { id: registered });
  }
  assert.deepEqual(mismatches, [], `${mismatches.length} of ${checked} cells differ from docs/security.md`);
  assert.equal(checked, Object.keys(callers).length * CELLS.length);
  // The foreign registrations a tenant may not touch are all still there.
  assert.equal((await admin<RegistrationInfo>(broker, 'show', { id: bForeign })).state, 'live');
  assert.equal((await admin<RegistrationInfo>(broker, 'show', { id: hostOwn })).state, 'live');
});
