/**
 * Processes of the zygote that stay inside a container (a template, a builtin
 * upcall child such as the DNS relay) carry none of another tenant's data
 * (issue 16, finding 9). Tenant A has an upcall in flight whose argv, env,
 * stdin and output carry secrets; then tenant B's template and relay are
 * forked. Their memory is read as the host sees it (/proc/<pid>/mem over every
 * readable mapping of /proc/<pid>/maps: heap, stack, .data/.bss, anonymous
 * maps) and must not hold A's secrets, while the zygote's own memory (the
 * control) holds them all. Runs as root.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { UpcallTarget, ZygoteRunner } from '../../src/upcall/zygote-runner.js';
import { zygoteRunner } from '../helpers/native.js';
import { until } from '../helpers/until.js';
import { Testbed, type TestContainer } from '../testbed/index.js';
import { initPidfd } from '../helpers/init-pidfd.js';

const bed = new Testbed();
const runners: ZygoteRunner[] = [];
const runner = zygoteRunner(runners);
let a: TestContainer;
let b: TestContainer;
let c: TestContainer;

type Secrets = Readonly<Record<'argv' | 'env' | 'stdin' | 'stdout', string>>;

/** Each appears, as a whole, only where its part of A's request is. */
function secretsOf(seed: string): Secrets {
  return {
    argv: `ub16-argv-${seed}`,
    env: `ub16-env-${seed}`,
    stdin: `ub16-stdin-${seed}`,
    stdout: `ub16-out-${seed.split('').reverse().join('')}`, // printed by A's program: not in its request
  };
}

/** A's upcall: reads its stdin, prints, then `then` (sleeps: in flight, or ends). */
function tenantA(seed: string, then: string, onStarted?: (pid: number) => void): Promise<unknown> {
  const secrets = secretsOf(seed);
  return runner.run({
    target: targetOf(a),
    mode: 'exec',
    argv: ['sh', '-c', `cat >/dev/null; printf "ub16-out-%s" "$(echo "$1" | rev)"; ${then}`, 'sh', seed, secrets.argv],
    env: { PATH: '/usr/bin:/bin', SECRET: secrets.env },
    stdin: Buffer.from(secrets.stdin),
    timeoutMs: 120_000,
    outputCap: 4096,
    ...(onStarted ? { onStarted } : {}),
  });
}

function startTime(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

const targetOf = (c: TestContainer): UpcallTarget => ({ initPid: c.initPid, initStartTime: startTime(c.initPid), pidnsIno: c.ns.pid, host: false, init: initPidfd(c.initPid) });

/** Which of the secrets a process's memory holds (every readable mapping but [vsyscall]). */
function secretsIn(pid: number, secrets: Secrets): string[] {
  const found = new Set<string>();
  const wanted = Object.entries(secrets).map(([k, v]) => [k, Buffer.from(v)] as const);
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  let scanned = 0;
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').trim().split('\n')) {
      const [range, perms] = line.split(/\s+/);
      if (!perms?.startsWith('r') || line.endsWith('[vsyscall]') || line.endsWith('[vvar]')) continue;
      const [lo, hi] = range!.split('-').map((h) => parseInt(h, 16)) as [number, number];
      const chunk = Buffer.alloc(Math.min(hi - lo, 1 << 24));
      for (let at = lo; at < hi; at += chunk.length) {
        let n: number;
        try {
          n = readSync(fd, chunk, 0, Math.min(chunk.length, hi - at), at);
        } catch {
          break; // EIO: not backed (guard pages)
        }
        scanned += n;
        for (const [k, v] of wanted) if (chunk.subarray(0, n).includes(v)) found.add(k);
      }
    }
  } finally {
    closeSync(fd);
  }
  assert.ok(scanned > 0, `read nothing of ${pid}'s memory`);
  return [...found].sort();
}

/** Processes of the zygote (named upcall-*) whose parent is x's init. */
function zygoteChildrenOf(x: TestContainer): number[] {
  const kids = readFileSync(`/proc/${x.initPid}/task/${x.initPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return kids.filter((k) => {
    try {
      return readFileSync(`/proc/${k}/comm`, 'utf8').startsWith('upcall-');
    } catch {
      return false;
    }
  });
}

before(async () => {
  [a, b, c] = await Promise.all([bed.create({ name: 'scruba' }), bed.create({ name: 'scrubb' }), bed.create({ name: 'scrubc' })]);
});
after(async () => {
  await Promise.all(runners.map((r) => r.stop()));
  await bed.dispose();
});

describe("another tenant's requests are not in a container's template or relay", () => {
  test("tenant B's template and DNS relay hold none of A's argv, env, stdin or output", async () => {
    let aPid = 0;
    const seed = randomBytes(12).toString('hex');
    const secrets = secretsOf(seed);
    const inFlight = tenantA(seed, 'exec sleep 120', (pid) => (aPid = pid)); // until killed
    inFlight.catch(() => undefined);
    const zygote = runner.zygotePid!;
    // the control: the zygote holds all four (the output once it has read it)
    await until('the zygote holds every secret of A', () => secretsIn(zygote, secrets).length === 4 && aPid > 0, 20_000, 50);
    assert.deepEqual(secretsIn(zygote, secrets), ['argv', 'env', 'stdin', 'stdout']);

    // B: its first upcall starts its template; then a relay (a builtin that stays)
    const first = await runner.run({ target: targetOf(b), mode: 'exec', argv: ['true'], timeoutMs: 30_000, outputCap: 4096 });
    assert.equal(first.code, 0);
    let relayPid = 0;
    const relay = runner.open({
      target: targetOf(b), mode: 'builtin', builtin: 'netrelay', argv: [], timeoutMs: 60_000, outputCap: 4096,
      onStarted: (pid) => (relayPid = pid),
    });
    relay.outcome.catch(() => undefined);
    await until("B's relay started", () => relayPid > 0, 20_000);
    let template = 0;
    await until("B's template is ready", () => {
      template = zygoteChildrenOf(b).find((p) => p !== relayPid && readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'upcall-context') ?? 0;
      return template > 0;
    }, 20_000);

    assert.deepEqual(secretsIn(template, secrets), [], `B's template (pid ${template}) holds A's secrets`);
    assert.deepEqual(secretsIn(relayPid, secrets), [], `B's relay (pid ${relayPid}) holds A's secrets`);
    // A's own processes are A's business: its upcall still runs, untouched
    assert.equal(readFileSync(`/proc/${aPid}/comm`, 'utf8').trim(), 'sleep');
    await relay.close(2000);
  });

  test("a finished request of A leaves nothing in the zygote's free memory for a later template", async () => {
    const seed = randomBytes(12).toString('hex');
    const secrets = secretsOf(seed);
    const done = (await tenantA(seed, 'exit 0')) as { code: number | null; stdout: Buffer };
    assert.equal(done.code, 0);
    assert.equal(done.stdout.toString(), secrets.stdout);
    const first = await runner.run({ target: targetOf(c), mode: 'exec', argv: ['true'], timeoutMs: 30_000, outputCap: 4096 });
    assert.equal(first.code, 0);
    let template = 0;
    await until("C's template is ready", () => {
      template = zygoteChildrenOf(c).find((p) => readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'upcall-context') ?? 0;
      return template > 0;
    }, 20_000);
    // zeroed when freed (and when a buffer grew), so no free chunk of the heap the template copied holds them
    assert.deepEqual(secretsIn(template, secrets), [], `C's template (pid ${template}) holds A's secrets`);
  });
});
