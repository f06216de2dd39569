/**
 * The zygote's context cache (native-bindings/README.md, "The context cache"):
 * a spawn served by a template is as true a child of the container's init as
 * one whose context was captured for it, field by field against a real child
 * of an unusual init; a change to init is seen by the very next spawn; the
 * template lives and dies with the container and with the zygote. Runs as root.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { ZygoteRunner, type UpcallOutcome, type UpcallTarget } from '../../src/upcall/zygote-runner.js';
import { compareProbes, probeAsInitChild, probeViaZygote, type Probe } from '../helpers/fidelity.js';
import { Testbed, type TestContainer } from '../testbed/index.js';
import { zygoteRunner } from '../helpers/native.js';
import { until } from '../helpers/until.js';
import { initPidfd } from '../helpers/init-pidfd.js';

const bed = new Testbed();
const runners: ZygoteRunner[] = [];
let c: TestContainer;

const newRunner = (): ZygoteRunner => zygoteRunner(runners);

function startTime(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

const target = (): UpcallTarget => ({ initPid: c.initPid, initStartTime: startTime(c.initPid), pidnsIno: c.ns.pid, host: false, init: initPidfd(c.initPid) });
const sh = (r: ZygoteRunner, script: string): Promise<UpcallOutcome> =>
  r.run({ target: target(), mode: 'exec', argv: ['sh', '-c', script], timeoutMs: 10_000, outputCap: 4096 });

/** Processes named upcall-context (templates) whose parent is the container's init. */
function templates(): number[] {
  const kids = readFileSync(`/proc/${c.initPid}/task/${c.initPid}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number);
  return kids.filter((k) => {
    try {
      const stat = readFileSync(`/proc/${k}/stat`, 'utf8');
      return readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'upcall-context' && stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
    } catch {
      return false;
    }
  });
}

/** As fidelity.test.ts: what no spawner can copy, with the weaker property it must have. */
const BY_CONSTRUCTION: Readonly<Record<string, (value: string | undefined) => boolean>> = {
  sid: (v) => v !== undefined && v !== '0',
  pgid: (v) => v !== undefined && v !== '0',
  session_keyring: (v) => /^keyring;0;0;[0-9a-f]+;/.test(v ?? ''),
};

function assertFaithful(truth: Probe, probe: Probe, what: string): void {
  const rows = compareProbes(truth, probe);
  const wrong = rows.filter((r) => !r.same && !(r.field in BY_CONSTRUCTION));
  assert.deepEqual(wrong, [], `${what}: fields that differ from a real child of init: ${wrong.map((r) => `${r.field} (${r.truth} vs ${r.other})`).join(', ')}`);
  const weaker = rows.filter((r) => r.field in BY_CONSTRUCTION && !BY_CONSTRUCTION[r.field]!(r.other));
  assert.deepEqual(weaker, [], `${what}: a field impossible to copy lacks its weaker property`);
}

before(async () => {
  c = await bed.create({ name: 'ccache', unusual: true });
});
after(async () => {
  await Promise.all(runners.map((r) => r.stop()));
  await bed.dispose();
});

describe('the context cache', () => {
  test('a cached spawn matches a real child of an unusual init field by field, as a freshly captured one does', async () => {
    const truth = await probeAsInitChild(c);
    const r = newRunner();
    const fresh = await probeViaZygote(r, c);
    assert.match(fresh.context['context'] ?? '', /^captured for this spawn/);
    assertFaithful(truth, fresh.probe, 'captured');
    const cached = await probeViaZygote(r, c);
    assert.match(cached.context['context'] ?? '', /^cached: captured \d+ ms ago/);
    assertFaithful(truth, cached.probe, 'cached');
  });

  test('the template is a child of the container\'s init, named upcall-context, with no host path in its command line', async () => {
    const r = newRunner();
    await sh(r, 'true');
    await sh(r, 'true');
    await until('a template under init', () => templates().length > 0);
    const t = templates()[0]!;
    assert.equal(readFileSync(`/proc/${t}/cmdline`, 'utf8').replace(/\0+$/, ''), 'upcall-context');
    const out = await sh(r, 'echo $PPID');
    assert.equal(out.stdout.toString().trim(), '1', 'the cached spawn\'s parent is init');
  });

  test('a change to init (rlimit, oom_score_adj, nice) is seen by the very next spawn', async () => {
    const r = newRunner();
    const probe = 'echo "$(ulimit -Sn) $(cat /proc/self/oom_score_adj) $(nice)"';
    const before = await sh(r, probe);
    const warm = await sh(r, probe);
    assert.equal(warm.stdout.toString(), before.stdout.toString());
    assert.match(warm.fields['context'] ?? '', /^cached/);
    const [soft, oom, nice] = warm.stdout.toString().trim().split(' ').map(Number);
    // Lowering a soft limit, raising oom_score_adj and niceness need no privilege.
    execFileSync('prlimit', ['--pid', String(c.initPid), `--nofile=${soft! - 7}:`]);
    writeFileSync(`/proc/${c.initPid}/oom_score_adj`, `${oom! + 5}\n`);
    execFileSync('renice', ['-n', String(nice! + 1), '-p', String(c.initPid)]);
    const changed = await sh(r, probe);
    assert.equal(changed.stdout.toString().trim(), `${soft! - 7} ${oom! + 5} ${nice! + 1}`);
    assert.match(changed.fields['context'] ?? '', /stale/, 'the cached context was found stale and captured anew');
    const again = await sh(r, probe);
    assert.equal(again.stdout.toString(), changed.stdout.toString());
    assert.match(again.fields['context'] ?? '', /^cached/, 'and the new capture is cached in turn');
  });

  test('the zygote killed with SIGKILL: its templates go too', async () => {
    await Promise.all(runners.map((x) => x.stop()));
    await until('earlier runners\' templates to exit', () => templates().length === 0);
    const r = newRunner();
    await sh(r, 'true');
    await sh(r, 'true');
    await until('a template under init', () => templates().length > 0);
    process.kill(r.zygotePid!, 'SIGKILL');
    await until('the templates to exit', () => templates().length === 0);
    await until('the runner to see its zygote gone', () => r.zygotePid === null);
    const out = await sh(r, 'echo again');
    assert.equal(out.stdout.toString(), 'again\n');
  });

  test('--no-context-cache: every spawn captures, and no template is left behind', async () => {
    await Promise.all(runners.map((x) => x.stop()));
    await until('earlier runners\' templates to exit', () => templates().length === 0);
    const r = newRunner();
    r.configure({ contextCache: false });
    for (let i = 0; i < 3; i++) assert.match((await sh(r, 'true')).fields['context'] ?? '', /^captured for this spawn$/);
    assert.deepEqual(templates(), []);
  });
});
