/**
 * Hostile containers (issue 9, part 3), through a real broker on real
 * namespaces:
 * - a container whose init exits, or execs, while its upcalls run;
 * - a registering process that exits and has its pid taken by another process
 *   before the broker looks at it (pid reuse): refused, never bound to the impostor;
 * - a container that tries to make an upcall reach the host's fds, paths, keys
 *   or network (loopback TCP, abstract UNIX sockets).
 * Resolver files as symlinks, FIFOs, huge files and device nodes are in dns.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BrokerClient } from '../../src/client/broker-client.js';
import type { RegistrationInfo } from '../../src/common/types.js';
import { encodeFrame } from '../../src/server/framing.js';
import { BrokerProcess, CLI } from '../helpers/broker-process.js';
import { takePid, type PidHolder } from '../helpers/pid-reuse.js';
import { cliIn, mountTmpfs, registerIn } from '../helpers/in-container.js';
import { admin, adminCode, ExitWatch, fdCount, pidsWithArgv } from '../helpers/reliability.js';
import { until } from '../helpers/until.js';
import { childrenOf, Testbed, type TestContainer } from '../testbed/index.js';
import { processesInNamespace } from '../testbed/procfs.js';

interface ExecJson { code: number | null; signal: string | null; stdoutBase64: string; stderrBase64: string }
const out = (r: ExecJson) => Buffer.from(r.stdoutBase64, 'base64').toString();
const err = (r: ExecJson) => Buffer.from(r.stderrBase64, 'base64').toString();

const KEY_DESC = `ub-test-${process.pid}-${randomBytes(4).toString('hex')}`;
const broker = new BrokerProcess();
const bed = new Testbed();
let c: TestContainer;
let reg: RegistrationInfo;
/** A host dir the containers can use (mode 0777): FIFOs, markers, output. */
let shared: string;

before(async () => {
  shared = mkdtempSync('/tmp/ub-hostile-');
  chmodSync(shared, 0o777);
  // The broker runs in a session keyring that holds a secret, as one started from a login
  // session or with systemd's KeyringMode=shared would: upcalls must not reach it.
  await broker.start([], ['keyctl', 'session', '-', 'sh', '-c', 'keyctl add user "$0" host-secret @s >/dev/null && exec "$@"', KEY_DESC]);
  c = await bed.create({
    name: 'hos',
    records: [{ name: 'slow.test', type: 'A', address: '192.0.2.71' }],
    dnsBehaviours: [{ name: 'slow.test', kind: 'noanswer' }],
  });
  await mountTmpfs(c, '/mnt/h');
  reg = await registerIn(c, broker.tenantSocket, '/mnt/h');
});
after(async () => {
  try {
    await bed.dispose();
  } finally {
    await broker.dispose();
    rmSync(shared, { recursive: true, force: true });
  }
});

const marker = () => `${3000 + Math.floor(Math.random() * 1000)}.${randomBytes(3).readUIntBE(0, 3)}`;

/** The outcome of a request as a short string: "ok", an error code, or "hang" after `ms`. */
function settle(p: Promise<unknown>, ms: number): Promise<{ outcome: string; value?: unknown; ms: number }> {
  const t0 = performance.now();
  return Promise.race([
    p.then((value) => ({ outcome: 'ok', value, ms: performance.now() - t0 }), (e: { code?: string }) => ({ outcome: e.code ?? String(e), ms: performance.now() - t0 })),
    new Promise<{ outcome: string; ms: number }>((r) => setTimeout(() => r({ outcome: 'hang', ms }), ms)),
  ]);
}

describe('a container whose init exits or execs mid-upcall', () => {
  test('init killed while an exec and a DNS upcall run: both settle at once (E_INIT_EXITED or a killed program), the broker serves on', async () => {
    const x = await bed.create({
      name: 'hos-die',
      records: [{ name: 'slow.test', type: 'A', address: '192.0.2.72' }],
      dnsBehaviours: [{ name: 'slow.test', kind: 'noanswer' }],
      // One try of 5 s: the lookup is still waiting when init dies.
      resolvConf: 'nameserver 127.0.0.1\noptions timeout:5 attempts:1\n',
    });
    await mountTmpfs(x, '/mnt/d');
    const r = await registerIn(x, broker.tenantSocket, '/mnt/d');
    const m = marker();
    const client = await BrokerClient.connect(broker.adminSocket);
    try {
      const exec = client.request<ExecJson>('exec', { mount: r.id, argv: ['sleep', m], timeoutMs: 30_000 });
      const dns = client.request('resolve', { mount: r.id, description: 'slow.test' });
      await until('the upcall to run and the lookup to be asked', async () =>
        pidsWithArgv(['sleep', m]).length === 1 && (await x.dnsQueries()).some((q) => q.name === 'slow.test'));
      const members = await processesInNamespace('user', x.ns.user);
      process.kill(x.initPid, 'SIGKILL'); // its pid namespace dies with it
      const [e, d] = await Promise.all([settle(exec, 5000), settle(dns, 5000)]);
      assert.ok(e.outcome === 'E_INIT_EXITED' || (e.outcome === 'ok' && (e.value as ExecJson).signal === 'SIGKILL'), `exec: ${JSON.stringify(e)}`);
      assert.ok(d.outcome === 'E_INIT_EXITED' || d.outcome === 'ok', `resolve: ${JSON.stringify(d)}`);
      assert.ok(e.ms < 3000 && d.ms < 3000, `settled at once (exec ${e.ms} ms, resolve ${d.ms} ms), not at their timeouts`);
      await until('the registration to be marked dead', async () => (await admin<RegistrationInfo>(broker, 'show', { id: r.id })).state === 'init-exited', 2000);
      assert.equal(await adminCode(broker, 'exec', { mount: r.id, argv: ['true'] }), 'E_INIT_EXITED');
      assert.equal(await adminCode(broker, 'resolve', { mount: r.id, description: 'slow.test' }), 'E_INIT_EXITED');
      assert.equal(await adminCode(broker, 'ping'), 'ok');
      assert.deepEqual(broker.crashLines(), []);
      // Nothing the broker started for this container outlives it (a bound, not at once: helpers
      // outside the container's pid namespace notice its end by polling).
      const watch = new ExitWatch(members.map((m) => m.pid));
      try {
        await watch.allExited(5000);
      } finally {
        watch.close();
      }
    } finally {
      client.close();
      await x.stop();
    }
  });

  test('a container whose init execs another program mid-upcall: the upcall finishes cleanly, later upcalls are children of the new image; its exit is E_INIT_EXITED', async (t) => {
    // A nested container (own user and pid namespace) inside `c`, whose pid 1 is a shell we steer
    // through two FIFOs: register, wait, exec a new image, wait, exit.
    const dir = mkdtempSync(join(shared, 'exec-'));
    chmodSync(dir, 0o777);
    const [go1, go2] = [join(dir, 'go1'), join(dir, 'go2')];
    for (const f of [go1, go2]) {
      execFileSync('mkfifo', ['-m', '0666', f]);
      chmodSync(f, 0o666);
    }
    const script = [
      `${process.execPath} ${CLI} register --socket ${broker.tenantSocket} --mount / --json > ${dir}/reg.json 2>&1`,
      `: > ${dir}/waiting`,
      `read x < ${go1}`,
      `exec sh -c ': > ${dir}/exec-done; read y < ${go2}' new-image`,
    ].join('\n');
    const h = await c.spawn(['unshare', '--user', '--map-root-user', '--pid', '--fork', '--mount-proc', 'sh', '-c', script]);
    t.after(() => void h.kill('SIGKILL'));
    await until('the nested init to register and wait', () => existsSync(join(dir, 'waiting')), 15_000);
    const nreg = JSON.parse(readFileSync(join(dir, 'reg.json'), 'utf8')) as RegistrationInfo;
    const [init] = await childrenOf(h.hostPid);
    assert.equal(nreg.context.initPid, init, 'the nested container\'s own context: its pid 1 is the shell');

    const m = `1.${randomBytes(3).readUIntBE(0, 3)}`;
    const inFlight = admin<ExecJson>(broker, 'exec', { mount: nreg.id, argv: ['sh', '-c', `sleep ${m}; echo finished`] });
    await until('the upcall to run', () => pidsWithArgv(['sleep', m]).length === 1);
    const w = await open(go1, 'w'); // the shell reads a line, then execs
    await w.write('go\n');
    await w.close();
    await until('init to exec its new image', () => existsSync(join(dir, 'exec-done')));
    const done = await settle(inFlight, 10_000);
    assert.equal(done.outcome, 'ok', JSON.stringify(done));
    assert.equal(out(done.value as ExecJson), 'finished\n', 'the upcall that ran across the exec finished cleanly');
    const after = await admin<ExecJson>(broker, 'exec', { mount: nreg.id, argv: ['sh', '-c', 'tr "\\0" " " < /proc/$PPID/cmdline; echo; grep PPid /proc/$$/status'] });
    assert.match(out(after), /^sh -c .*exec-done.* new-image \n/, `a later upcall is a child of the new image: ${out(after)}`);
    assert.match(out(after), /^PPid:\s+1$/m);

    const w2 = await open(go2, 'w'); // the new image exits: the nested pid namespace dies with it
    await w2.write('go\n');
    await w2.close();
    await until('the context to be marked dead', async () => (await admin<RegistrationInfo>(broker, 'show', { id: nreg.id })).state === 'init-exited', 2000);
    assert.equal(await adminCode(broker, 'exec', { mount: nreg.id, argv: ['true'] }), 'E_INIT_EXITED');
    assert.deepEqual(broker.crashLines(), []);
  });
});

describe('pid reuse while registering', () => {
  test('the mounter exits and its pid goes to a host root process before the broker looks: refused, never bound to the impostor', async (t) => {
    const b = new BrokerProcess();
    t.after(() => b.dispose());
    await b.start();
    // The mounter: connect, send `register`, exit at once without waiting for the answer.
    const mounter = `
      const net = require('node:net');
      const s = net.connect(${JSON.stringify(b.tenantSocket)}, () => {
        s.write(Buffer.from(${JSON.stringify(encodeFrame({ v: 1, id: 1, op: 'register', params: { mountpoint: '/mnt/h' } }).toString('base64'))}, 'base64'), () => process.exit(0));
      });`;
    const impostors: PidHolder[] = [];
    t.after(() => impostors.forEach((p) => p.kill('SIGKILL')));
    process.kill(b.pid!, 'SIGSTOP'); // the broker cannot accept until the impostor exists
    let stopped = true;
    t.after(() => { if (stopped) process.kill(b.pid!, 'SIGCONT'); });
    for (let round = 0; round < 3; round++) {
      const h = await c.spawn([process.execPath, '-e', mounter]);
      const r = await h.wait();
      assert.equal(r.code, 0, r.stderr);
      const impostor = await takePid(h.hostPid);
      impostors.push(impostor);
      assert.equal(impostor.pid, h.hostPid, 'the mounter\'s pid now names a host root process');
    }
    process.kill(b.pid!, 'SIGCONT');
    stopped = false;
    await until('the broker to have dealt with the three connections', () =>
      (b.output.match(/peer exited before it was served|cannot identify peer|register.*(E_NO_PROCESS|E_INIT_EXITED)/g) ?? []).length >= 3, 5000);
    const regs = await admin<RegistrationInfo[]>(b, 'list');
    assert.deepEqual(regs, [], `nothing registered: ${JSON.stringify(regs.map((x) => [x.mounter, x.context]))}`);
    assert.deepEqual(b.crashLines(), []);
  });

  test('a mounter that execs another program after sending is still itself: registered in its own container', async () => {
    // Same process, new image: the broker's pidfd still names it, so this is no impostor.
    const frame = encodeFrame({ v: 1, id: 1, op: 'register', params: { mountpoint: '/mnt/h' } }).toString('base64');
    const script = [
      'import base64, os, socket, sys',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
      `s.connect(${JSON.stringify(broker.tenantSocket)})`,
      `s.sendall(base64.b64decode(${JSON.stringify(frame)}))`,
      'os.dup2(s.fileno(), 3)',
      'os.set_inheritable(3, True)', // dup2 onto itself keeps close-on-exec
      // The new image reads the answer from the inherited socket and prints its JSON.
      'os.execv(sys.executable, [sys.executable, "-c", READER])',
    ].join('\n');
    const reader = [
      'import os, struct',
      'def take(n):',
      '    b = b""',
      '    while len(b) < n: b += os.read(3, n - len(b))',
      '    return b',
      'print(take(struct.unpack(">I", take(4))[0]).decode())',
    ].join('\n');
    const r = await c.exec(['python3', '-c', script.replace('READER', JSON.stringify(reader))], { timeoutMs: 10_000 });
    assert.equal(r.code, 0, r.stderr);
    const answer = JSON.parse(r.stdout) as { ok: boolean; result: RegistrationInfo };
    assert.equal(answer.ok, true, r.stdout + r.stderr);
    assert.equal(answer.result.context.initPid, c.initPid);
    await admin(broker, 'unregister', { id: answer.result.id });
  });
});


describe('an upcall cannot reach the host', () => {
  test('fds: only 0, 1 and 2; the broker holds many more (sockets, pidfds, namespace fds)', async () => {
    // ls itself, no shell (a shell holds pipes of its own while it starts a pipeline).
    const ours = await admin<ExecJson>(broker, 'exec', { mount: reg.id, argv: ['ls', '-l', '/proc/self/fd'] });
    const fds = out(ours).split('\n').flatMap((l) => /(\d+) -> (.*)$/.exec(l)?.slice(1) ?? []);
    const extra = [];
    for (let i = 0; i < fds.length; i += 2) if (!['0', '1', '2'].includes(fds[i]!) && !/^\/proc\/\d+\/fd$/.test(fds[i + 1]!)) extra.push(`${fds[i]} -> ${fds[i + 1]}`);
    assert.deepEqual(extra, [], `only 0, 1, 2 and ls's own directory fd:\n${out(ours)}`);
    assert.deepEqual(fds.filter((_, i) => i % 2 === 0).slice(0, 3), ['0', '1', '2']);
    assert.ok(fdCount(broker.pid!) > 10, 'there would be something to leak');
    // (No oracle here: the testbed's node init hands its own children an extra pipe.)
  });

  test('keys: the broker\'s session keyring holds a secret; the upcall has a fresh session keyring and cannot find, read or link the key', async () => {
    const keyId = execFileSync('sh', ['-c', `grep -F ' ${KEY_DESC}: ' /proc/keys | cut -d' ' -f1`], { encoding: 'utf8' }).trim();
    assert.match(keyId, /^[0-9a-f]+$/, 'the broker\'s key exists (as /proc/keys shows to root)');
    const id = String(parseInt(keyId, 16));
    const script = `keyctl search @s user ${KEY_DESC}; echo "search=$?"; keyctl print ${id}; echo "print=$?"; keyctl link ${id} @s; echo "link=$?"; keyctl rdescribe @s`;
    const r = await admin<ExecJson>(broker, 'exec', { mount: reg.id, argv: ['sh', '-c', script] });
    assert.match(out(r), /search=1/);
    assert.match(out(r), /print=1/);
    assert.match(out(r), /link=1/);
    assert.match(out(r), /^keyring;0;0;[0-9a-f]+;_ses$/m, 'a new session keyring of (container) root');
    assert.doesNotMatch(out(r) + err(r), /host-secret/);
  });

  test('paths: a host-only program is not found; a planted symlink to a host-only file is read with the container\'s credentials', async (t) => {
    const hidden = mkdtempSync('/tmp/ub-hidden-');
    chmodSync(hidden, 0o755);
    const secret = join(shared, `secret-${randomBytes(3).toString('hex')}`);
    writeFileSync(secret, 'host-only secret\n', { mode: 0o600 });
    t.after(() => rmSync(hidden, { recursive: true, force: true }));
    writeFileSync(join(hidden, 'prog'), '#!/bin/sh\necho host program\n', { mode: 0o755 });
    // The container covers the directory with its own tmpfs (its mount namespace only) and plants a link.
    await c.check(['sh', '-c', `mount -t tmpfs tmpfs ${hidden} && ln -sf ${secret} /mnt/h/link`]);
    assert.equal(await adminCode(broker, 'exec', { mount: reg.id, argv: [join(hidden, 'prog')] }), 'E_NOT_FOUND');
    const r = await admin<ExecJson>(broker, 'exec', { mount: reg.id, argv: ['cat', '/mnt/h/link'] });
    assert.notEqual(r.code, 0);
    assert.match(err(r), /Permission denied/);
    assert.doesNotMatch(out(r), /secret/);
    assert.equal(readFileSync(secret, 'utf8'), 'host-only secret\n', 'host root reads it: only the credentials differ');
  });

  test('network: a listener on the host\'s loopback and a host abstract UNIX socket are unreachable; nothing connects to them', async (t) => {
    const seen: string[] = [];
    const listen = (s: Server, at: Parameters<Server['listen']>[0]) => new Promise<void>((r) => s.listen(at, () => r()));
    const tcp = createServer((s) => { seen.push('tcp'); s.destroy(); });
    const abstract = `ub-host-${process.pid}-${randomBytes(4).toString('hex')}`;
    const unix = createServer((s) => { seen.push('unix'); s.destroy(); });
    await listen(tcp, { host: '127.0.0.1', port: 0 });
    await listen(unix, { path: `\0${abstract}` });
    t.after(() => { tcp.close(); unix.close(); });
    const port = (tcp.address() as { port: number }).port;
    const probe = `
      const net = require('node:net');
      const tryConnect = (opts) => new Promise((r) => { const s = net.connect(opts); s.on('connect', () => { s.destroy(); r('connected'); }); s.on('error', (e) => r(e.code)); });
      (async () => { console.log(await tryConnect({ host: '127.0.0.1', port: ${port} }), await tryConnect({ path: '\\0${abstract}' })); })();`;
    // The oracle first: from the host, the same probe connects to both.
    const host = execFileSync(process.execPath, ['-e', probe], { encoding: 'utf8' });
    assert.equal(host.trim(), 'connected connected');
    await until('the host probe\'s connections to be seen', () => seen.length === 2);
    const r = await admin<ExecJson>(broker, 'exec', { mount: reg.id, argv: [process.execPath, '-e', probe] });
    assert.equal(out(r).trim(), 'ECONNREFUSED ECONNREFUSED', err(r));
    assert.deepEqual(seen, ['tcp', 'unix'], 'nothing from the upcall reached the host listeners');
  });
});


