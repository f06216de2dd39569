/**
 * The upcall zygote (build/Release/upcall-zygote through ZygoteRunner) on real
 * containers: the upcall is a true child of the container's init (PPid, fds,
 * namespaces, credentials as a real child of init has them), nothing of the
 * host leaks (keyring, program paths), and the process machinery holds up
 * (timeouts kill the tree, output caps, exit status, a dying init, a dying
 * zygote, malformed requests). Runs as root.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { defaultConfig } from '../../src/common/defaults.js';
import { NullLoggerFactory } from '../../src/logging/winston-logger-factory.js';
import { NS_TYPES } from '../../src/ns/kernel-constants.js';
import { SystemClock } from '../../src/platform/node-platform.js';
import { decodeZygoteEvent, encodeZygoteFrame, type SpawnFrame } from '../../src/upcall/zygote-protocol.js';
import { ZygoteRunner, type UpcallOutcome, type UpcallRequest, type UpcallTarget } from '../../src/upcall/zygote-runner.js';
import { procStat, Testbed, type TestContainer } from '../testbed/index.js';
import { scaled } from '../testbed/time-scale.js';
import { zygoteRunner } from '../helpers/native.js';
import { until } from '../helpers/until.js';
import { exitedPidfd, initPidfd } from '../helpers/init-pidfd.js';

const ZYGOTE = join(defaultConfig().nativeDir, 'upcall-zygote');
const bed = new Testbed();
const runners: ZygoteRunner[] = [];
let c: TestContainer;

const newRunner = (): ZygoteRunner => zygoteRunner(runners);
const runner = newRunner();

before(async () => {
  c = await bed.create({ name: 'upx' });
});
after(async () => {
  await Promise.all(runners.map((r) => r.stop()));
  await bed.dispose();
});

function startTime(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

function nsLink(pid: number | 'self', type: string): string {
  return readlinkSync(`/proc/${pid}/ns/${type}`);
}

function targetOf(x: TestContainer): UpcallTarget {
  return { initPid: x.initPid, initStartTime: startTime(x.initPid), pidnsIno: x.ns.pid, host: false, init: initPidfd(x.initPid) };
}

function hostTarget(): UpcallTarget {
  return { initPid: 1, initStartTime: startTime(1), pidnsIno: Number(/\[(\d+)\]/.exec(nsLink('self', 'pid'))![1]), host: true, init: initPidfd(1) };
}

function exec(argv: readonly string[], more: Partial<UpcallRequest> = {}, on: TestContainer = c, r = runner): Promise<UpcallOutcome> {
  // scaled: in a namespace test VM (TCG) 100 queued upcalls take longer than 10 s to spawn
  return r.run({ target: targetOf(on), mode: 'exec', argv, timeoutMs: scaled(10_000), outputCap: 1 << 20, ...more });
}

function readOr(path: string, fallback = ''): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

/** The lines of /proc/<pid>/status that name a process's credentials and inherited state. */
const STATUS_KEYS = ['Umask', 'PPid', 'Uid', 'Gid', 'Groups', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp', 'Seccomp_filters'];
function statusLines(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const [k, v] = line.split(':\t');
    if (k !== undefined && v !== undefined && STATUS_KEYS.includes(k)) out[k] = v.trim();
  }
  return out;
}

function gone(pid: number, start: string): boolean {
  const st = readOr(`/proc/${pid}/stat`);
  if (st === '') return true;
  const fields = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return fields[19] !== start || fields[0] === 'Z';
}

describe('an upcall is a true child of the container init', () => {
  test('its parent is init, it holds only fds 0-2, and it is in all of init\'s namespaces', async () => {
    let pid = 0;
    const seen: { ppid?: string; fds?: string[]; ns?: Record<string, string> } = {};
    const run = exec(['sleep', '2'], { onStarted: (p) => (pid = p) });
    await until('the upcall to exec sleep', () => pid > 0 && readOr(`/proc/${pid}/comm`).trim() === 'sleep');
    seen.ppid = /^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    seen.fds = readdirSync(`/proc/${pid}/fd`).sort();
    seen.ns = Object.fromEntries(NS_TYPES.map((t) => [t, nsLink(pid, t)]));
    const out = await run;
    assert.equal(out.code, 0, out.stderr.toString());
    assert.equal(out.pid, pid);
    assert.equal(seen.ppid, String(c.initPid), 'PPid (host view) is the container init');
    assert.deepEqual(seen.fds, ['0', '1', '2']);
    for (const t of NS_TYPES) assert.equal(seen.ns[t], nsLink(c.initPid, t), `${t} namespace`);
    assert.match(out.fields['namespaces'] ?? '', /^entered: user,mnt,pid,net,uts,ipc,cgroup/);
  });

  test('credentials, capabilities and umask equal those of a real child of init (same probe, both inside)', async () => {
    const unusual = await bed.create({ name: 'upx-unusual', unusual: true });
    for (const x of [c, unusual]) {
      const real = await (await x.runAsInitChild(['cat', '/proc/self/status', '/proc/self/cgroup'])).wait();
      const ours = await exec(['cat', '/proc/self/status', '/proc/self/cgroup'], {}, x);
      assert.equal(ours.code, 0, ours.stderr.toString());
      const text = ours.stdout.toString();
      assert.deepEqual(statusLines(text), statusLines(real.stdout), `status lines in ${x.name}`);
      assert.deepEqual(text.split('\n').filter((l) => /^\d+:/.test(l)), real.stdout.split('\n').filter((l) => /^\d+:/.test(l)), `cgroups in ${x.name}`);
    }
    const marker = await exec(['sh', '-c', 'test -e /ub-chroot-marker && echo chroot; pwd'], {}, unusual);
    assert.equal(marker.stdout.toString(), `chroot\n${unusual.unusual?.initCwd ?? ''}\n`, 'init\'s root and cwd, not the mount namespace root');
  });

  test('builtin echo-context runs inside without exec: init\'s ids and namespaces, not dumpable, parent init', async () => {
    const out = await runner.run({ target: targetOf(c), mode: 'builtin', builtin: 'echo-context', argv: [], timeoutMs: 5000, outputCap: 65536 });
    assert.equal(out.code, 0, out.stderr.toString());
    const lines = out.stdout.toString().split('\n');
    assert.ok(lines.includes('uid 0 0 0 0') && lines.includes('gid 0 0 0 0'), out.stdout.toString());
    for (const t of NS_TYPES) assert.ok(lines.includes(`ns ${t} ${nsLink(c.initPid, t)}`), `ns ${t}`);
    assert.ok(lines.includes('dumpable 0'));
    assert.match(out.stdout.toString(), /^pid \d+ ppid 1$/m);
    const initCwd = (await (await c.runAsInitChild(['readlink', '/proc/self/cwd'], { inheritCwd: true })).wait()).stdout.trim();
    assert.ok(lines.includes(`cwd ${initCwd}`), `cwd is init's (${initCwd})`);
    assert.match(out.fields['dumpable'] ?? '', /^0/);
  });
});

describe('nothing of the host leaks into the upcall', () => {
  test('a fresh session keyring: a key in the broker\'s session keyring is not reachable', async () => {
    // The zygote runs in a session keyring holding a secret, as a broker started
    // with a session keyring would (systemd's KeyringMode=, a login shell).
    const desc = `ub-test-${process.pid}-${randomBytes(4).toString('hex')}`;
    const withKey = ['session', '-', 'sh', '-c', 'keyctl add user "$0" host-secret @s >/dev/null && exec "$@"', desc];
    const sanity = execFileSync('keyctl', [...withKey, 'keyctl', 'search', '@s', 'user', desc], { encoding: 'utf8' });
    assert.match(sanity, /^\d+$/m, 'the wrapper gives its program a reachable key');
    const keyed = new ZygoteRunner({ spawn: (cmd, args, opts) => spawn('keyctl', [...withKey, cmd, ...args], opts) },
      defaultConfig(), new NullLoggerFactory(), new SystemClock());
    runners.push(keyed);
    const script = `keyctl search @s user ${desc}; echo "search=$?"; keyctl rdescribe @s`;
    for (const target of [targetOf(c), hostTarget()]) {
      const out = await keyed.run({ target, mode: 'exec', argv: ['sh', '-c', script], timeoutMs: 5000, outputCap: 4096 });
      const text = out.stdout.toString();
      assert.match(text, /search=1/, `the broker's key is not found (${target.host ? 'host' : 'container'})`);
      assert.match(text, /^keyring;0;0;[0-9a-f]+;_ses$/m, 'a new anonymous session keyring owned by (container) root');
      assert.doesNotMatch(text, /host-secret/);
    }
  });

  test('a program path is resolved in the container\'s root: a symlink to a host path finds the container\'s file', async (t) => {
    const over = mkdtempSync('/tmp/ub-over-');
    const links = [`/tmp/ub-link-${randomBytes(4).toString('hex')}`, `/tmp/ub-link-${randomBytes(4).toString('hex')}`];
    const x = await bed.create({ name: 'upx-paths' });
    t.after(async () => {
      await x.stop(); // its tmpfs over `over` goes with its mount namespace
      for (const l of links) rmSync(l, { force: true });
      rmSync(over, { recursive: true, force: true });
    });
    // inside: a tmpfs over the directory, with the container's own prog
    await x.check(['sh', '-c', `mount -t tmpfs tmpfs "$1" && printf '#!/bin/sh\\necho container\\n' > "$1/prog" && chmod 755 "$1/prog"`, 'sh', over]);
    // host: files under the same path, hidden from the container by its tmpfs
    writeFileSync(join(over, 'prog'), '#!/bin/sh\necho host\n', { mode: 0o755 });
    writeFileSync(join(over, 'host-only'), '#!/bin/sh\necho host-only\n', { mode: 0o755 });
    chmodSync(over, 0o755);
    symlinkSync(join(over, 'prog'), links[0]!);
    symlinkSync(join(over, 'host-only'), links[1]!);
    assert.equal(execFileSync(links[0]!, { encoding: 'utf8' }), 'host\n', 'on the host the link leads to the host file');
    assert.equal((await exec([links[0]!], {}, x)).stdout.toString(), 'container\n', 'absolute path via a symlink');
    assert.equal((await exec(['prog'], { env: { PATH: over } }, x)).stdout.toString(), 'container\n', 'bare name via PATH');
    await assert.rejects(exec([links[1]!], {}, x), (e: { code?: string }) => e.code === 'E_NOT_FOUND', 'a host-only target does not exist inside');
  });
});

describe('process machinery', () => {
  test('a timeout kills the whole tree: the upcall and a grandchild sleeping forever are both gone', async () => {
    let pid = 0;
    const run = exec(['sh', '-c', 'sleep 1000 & sleep 1000'], { timeoutMs: 1500, onStarted: (p) => (pid = p) });
    let kids: number[] = [];
    await until('two sleeps under the upcall', () => {
      kids = pid > 0 ? readOr(`/proc/${pid}/task/${pid}/children`).split(' ').filter(Boolean).map(Number) : [];
      return kids.length === 2;
    });
    const ids = await Promise.all([pid, ...kids].map(async (p) => ({ pid: p, start: (await procStat(p))!.startTime })));
    const out = await run;
    assert.equal(out.timedOut, true);
    assert.equal(out.signal, 'SIGKILL');
    assert.ok(out.durationMs >= 1500 && out.durationMs < 6000, `took ${out.durationMs} ms`);
    await until('every process of the tree to die', () => ids.every((i) => gone(i.pid, i.start)));
  });

  test('output over the cap is cut and reported; stdin passes through', async () => {
    const big = await exec(['head', '-c', '100000', '/dev/zero'], { outputCap: 1000 });
    assert.equal(big.stdout.length, 1000);
    assert.equal(big.truncated, true);
    assert.equal(big.code, 0);
    const err = await exec(['sh', '-c', 'head -c 5000 /dev/zero >&2'], { outputCap: 100 });
    assert.deepEqual([err.stderr.length, err.truncated], [100, true]);
    const payload = randomBytes(300_000);
    const echoed = await exec(['cat'], { stdin: payload });
    assert.ok(echoed.stdout.equals(payload), 'stdin came back unchanged');
    assert.equal(echoed.truncated, false);
  });

  test('exit codes and signals pass through; a missing program is E_NOT_FOUND', async () => {
    const seven = await exec(['sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.deepEqual([seven.code, seven.signal, seven.stdout.toString(), seven.stderr.toString()], [7, null, 'out\n', 'err\n']);
    const term = await exec(['sh', '-c', 'kill -TERM $$']);
    assert.deepEqual([term.code, term.signal], [null, 'SIGTERM']);
    await assert.rejects(exec(['/no/such/program']), (e: { code?: string }) => e.code === 'E_NOT_FOUND');
    await assert.rejects(exec(['no-such-program-ub']), (e: { code?: string }) => e.code === 'E_NOT_FOUND');
    await assert.rejects(exec(['/etc/passwd']), (e: { code?: string; details?: { errno?: number } }) => e.code === 'E_SPAWN' && e.details?.errno === 13);
  });

  test('many upcalls in flight at once (more than the zygote takes: the rest wait in the runner)', async () => {
    const outs = await Promise.all(Array.from({ length: 100 }, (_, i) => exec(['sh', '-c', 'sleep 0.2; echo "$0"', `n${i}`])));
    assert.deepEqual(outs.map((o) => o.stdout.toString()), Array.from({ length: 100 }, (_, i) => `n${i}\n`));
  });

  test('host requests run in the broker\'s own namespaces with its credentials', async () => {
    const out = await runner.run({ target: hostTarget(), mode: 'exec', argv: ['sh', '-c', 'readlink /proc/self/ns/mnt; id -u'], timeoutMs: 5000, outputCap: 4096 });
    assert.equal(out.stdout.toString(), `${nsLink('self', 'mnt')}\n0\n`);
    assert.equal(out.fields['namespaces'], 'skipped: host');
  });

  test('a rlimit above what we may raise is reported as degraded, not a failure', async () => {
    // Raising a hard limit needs CAP_SYS_RESOURCE: this machine's root lacks it, a VM guest's has it.
    const canRaise = ((BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]}`) >> 24n) & 1n) === 1n;
    const r = newRunner();
    await exec(['true'], {}, c, r); // starts the zygote
    const [, initHard] = readFileSync(`/proc/${c.initPid}/limits`, 'utf8').match(/^Max open files\s+\S+\s+(\d+)/m) ?? [];
    const lower = Math.max(64, Math.floor(Number(initHard) / 2));
    execFileSync('prlimit', ['--pid', String(r.zygotePid), `--nofile=${lower}:${lower}`]); // lowering needs no privilege
    const out = await exec(['sh', '-c', 'ulimit -Hn'], {}, c, r);
    if (canRaise) {
      assert.equal(out.stdout.toString().trim(), initHard, 'with CAP_SYS_RESOURCE init\'s hard limit is taken');
      return;
    }
    assert.equal(out.stdout.toString().trim(), String(lower), 'our hard limit is kept');
    assert.match(out.fields['rlimits'] ?? '', new RegExp(`^degraded: NOFILE hard ${initHard} kept at ${lower}`));
  });
});

describe('failures', () => {
  test('a dead or replaced init is E_INIT_EXITED, never a hang', async () => {
    const x = await bed.create({ name: 'upx-dead' });
    const t = targetOf(x);
    // init is its pidfd, not its number: a pidfd of a process that has exited, with a live init's pid (a reused pid)
    const gone = await exitedPidfd();
    await assert.rejects(runner.run({ target: { ...t, init: gone }, mode: 'exec', argv: ['true'], timeoutMs: 5000, outputCap: 10 }),
      (e: { code?: string }) => e.code === 'E_INIT_EXITED', 'the pidfd of an exited process: a reused pid').finally(() => gone.close());
    await assert.rejects(runner.run({ target: { ...t, pidnsIno: t.pidnsIno + 1 }, mode: 'exec', argv: ['true'], timeoutMs: 5000, outputCap: 10 }),
      (e: { code?: string }) => e.code === 'E_INIT_EXITED', 'another pid namespace');
    // init dies while requests are being spawned: each settles, none hangs
    const inFlight = Array.from({ length: 6 }, () =>
      runner.run({ target: t, mode: 'exec', argv: ['sleep', '30'], timeoutMs: 20_000, outputCap: 10 }).then(
        (o) => `signal ${o.signal}`,
        (e: { code?: string }) => e.code ?? 'no code',
      ));
    await x.stop();
    const settled = await Promise.all(inFlight);
    for (const s of settled) assert.ok(s === 'E_INIT_EXITED' || s === 'signal SIGKILL', s);
    await assert.rejects(runner.run({ target: t, mode: 'exec', argv: ['true'], timeoutMs: 5000, outputCap: 10 }),
      (e: { code?: string }) => e.code === 'E_INIT_EXITED', 'after the init exited');
  });

  test('the zygote killed with SIGKILL: in-flight upcalls fail with E_SPAWN, the next one works, restarts is 1', async () => {
    const r = newRunner();
    let pid = 0;
    const inFlight = exec(['sleep', '30'], { timeoutMs: 60_000, onStarted: (p) => (pid = p) }, c, r);
    inFlight.catch(() => undefined); // asserted below; never an unhandled rejection meanwhile
    await until('the upcall to start', () => pid > 0);
    process.kill(r.zygotePid!, 'SIGKILL');
    await assert.rejects(inFlight, (e: { code?: string }) => e.code === 'E_SPAWN');
    process.kill(pid, 'SIGKILL'); // orphaned in the container; its init never reaps it
    const out = await exec(['echo', 'again'], {}, c, r);
    assert.equal(out.stdout.toString(), 'again\n');
    assert.equal(r.restarts, 1);
  });

  test('malformed requests get an error event and never kill the zygote', async () => {
    const z = spawn(ZYGOTE, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    const events: Array<Record<string, unknown>> = [];
    let buf = Buffer.alloc(0);
    z.stdout.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        events.push(decodeZygoteEvent(buf.subarray(4, 4 + buf.readUInt32BE(0))) as unknown as Record<string, unknown>);
        buf = buf.subarray(4 + buf.readUInt32BE(0));
      }
    });
    const frame = (body: Buffer | string): Buffer => {
      const b = Buffer.from(body);
      const h = Buffer.alloc(4);
      h.writeUInt32BE(b.length);
      return Buffer.concat([h, b]);
    };
    const h = hostTarget();
    const good: SpawnFrame = { id: 9, initPidfd: h.init.fd, initPid: h.initPid, initStartTime: h.initStartTime, pidns: h.pidnsIno, host: true, mode: 'exec', argv: ['echo', 'fine'], timeoutMs: 5000, outputCap: 100 };
    /** The body of a spawn record, for frame() to send as changed. */
    const record = (m: SpawnFrame): Buffer => encodeZygoteFrame(m).subarray(4);
    const badMode = record({ ...good, id: 3 });
    badMode[9] = 9; // no such mode
    z.stdin.write(frame('{"id":0,"op":"spawn"}')); // JSON: no request any more
    z.stdin.write(frame(Buffer.concat([record({ ...good, id: 1 }), Buffer.from('x')]))); // a byte after the record
    z.stdin.write(frame(record({ ...good, id: 2, argv: [] })));
    z.stdin.write(frame(badMode));
    z.stdin.write(frame(record({ ...good, id: 4, stdin: Buffer.from('abc') }).subarray(0, -1))); // stdin runs past the frame
    const huge = Buffer.alloc(4 + 9 * 1024 * 1024, 0x20);
    huge.writeUInt32BE(9 * 1024 * 1024);
    z.stdin.write(huge); // over the frame limit: refused and skipped
    z.stdin.write(encodeZygoteFrame(good));
    try {
      await until('the good request to finish', () => events.some((e) => e['id'] === 9 && e['event'] === 'exit'), 10_000);
      const errors = events.filter((e) => e['event'] === 'error');
      assert.deepEqual(errors.map((e) => [e['id'], e['code']]), [[null, 'E_BAD_REQUEST'], [1, 'E_BAD_REQUEST'], [2, 'E_BAD_REQUEST'], [3, 'E_BAD_REQUEST'], [4, 'E_BAD_REQUEST'], [null, 'E_BAD_REQUEST']]);
      const exit = events.find((e) => e['id'] === 9 && e['event'] === 'exit')!;
      assert.equal(Buffer.from(String(exit['stdoutBase64']), 'base64').toString(), 'fine\n');
    } finally {
      z.stdin.end();
      await new Promise((r) => z.once('close', r));
    }
    assert.equal(z.exitCode, 0, 'the zygote exits cleanly when its stdin closes');
  });
});
