/**
 * The DNS relay reads a container's resolver files inside its root, never the
 * host's (issue 16, finding 11), on real containers through the zygote's
 * netrelay builtin, as ZygoteRelayLauncher starts it.
 *
 * The containers' inits chroot()ed into a root of their own (the unusual
 * init), and a process of the container sits in its pid namespace with the
 * mount namespace's root instead (one entered with nsenter, without -r), where
 * the host's /run is. Files the relay is asked for are symlinks to a file whose
 * path exists both in the container's root and on the host: absolute, with
 * ".." beyond the root, and through /proc/<that process>/root (a magic link).
 * A true child of init reads the host's file through the last (the control);
 * the relay must not. The second container's seccomp filter refuses openat2
 * (ENOSYS, as old container profiles do): its relay resolves by hand.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { RelayTransport, type FileReply } from '../../src/upcall/dns/relay-transport.js';
import type { UpcallTarget, ZygoteRunner } from '../../src/upcall/zygote-runner.js';
import { zygoteRunner } from '../helpers/native.js';
import type { ChildHandle } from '../testbed/child-handles.js';
import { Testbed, type TestContainer } from '../testbed/index.js';
import { initPidfd } from '../helpers/init-pidfd.js';

const bed = new Testbed();
const runners: ZygoteRunner[] = [];
const runner = zygoteRunner(runners);
const tag = `ub-hardening-${randomBytes(6).toString('hex')}`;
const HOST_DIR = `/run/${tag}`; // not in the containers' roots (no /run there)
const HOST_TEXT = 'nameserver 203.0.113.66 # the host file\n';
const CONTAINER_TEXT = 'nameserver 192.0.2.53 # the container file\n';
const sleepers: ChildHandle[] = [];
let plain: TestContainer;
let noOpenat2: TestContainer;

function startTime(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

const targetOf = (c: TestContainer): UpcallTarget => ({ initPid: c.initPid, initStartTime: startTime(c.initPid), pidnsIno: c.ns.pid, host: false, init: initPidfd(c.initPid) });

/** The container's file at HOST_DIR's path in its root, and /links with the ways out. */
async function plant(c: TestContainer): Promise<void> {
  // in the container's pid namespace, with the mount namespace's root (the host's /run)
  const sleeper = await c.spawn(['sleep', '600']);
  sleepers.push(sleeper);
  const inside = sleeper.nsPids.at(-1)!;
  assert.equal(readFileSync(`/proc/${sleeper.hostPid}/root${HOST_DIR}/resolv.conf`, 'utf8'), HOST_TEXT, 'the sleeper sees the host file');
  // as container root (host root cannot create files in the root's tmpfs: EOVERFLOW), in init's
  // root, a tmpfs at DIR/root in the container's mount namespace
  const script = 'set -e; R="$1/root"; mkdir -p "$R$2"; printf %s "$3" > "$R$2/resolv.conf"; mkdir "$R/links"; ' +
    'ln -s "$2/resolv.conf" "$R/links/absolute"; ln -s "../../../../../../..$2/resolv.conf" "$R/links/dotdot"; ' +
    'ln -s "/proc/$4/root$2/resolv.conf" "$R/links/magic"; ln -s ../../../../.. "$R/links/up"; ln -s /links/loop "$R/links/loop"';
  await c.check(['sh', '-c', script, 'sh', c.dir, HOST_DIR, CONTAINER_TEXT, String(inside)]);
}

/** Read each path through one relay of c. */
async function relayRead(c: TestContainer, paths: readonly string[]): Promise<FileReply[]> {
  const session = runner.open({ target: targetOf(c), mode: 'builtin', builtin: 'netrelay', argv: [], timeoutMs: 30_000, outputCap: 4096 });
  try {
    const transport = new RelayTransport(session.stdin, session.stdout);
    const replies: FileReply[] = [];
    for (const p of paths) replies.push(await transport.readFile(p));
    return replies;
  } finally {
    await session.close(2000);
  }
}

before(async () => {
  mkdirSync(HOST_DIR, { mode: 0o755 });
  writeFileSync(`${HOST_DIR}/resolv.conf`, HOST_TEXT, { mode: 0o644 });
  [plain, noOpenat2] = await Promise.all([
    bed.create({ name: 'relayfiles', unusual: true }),
    bed.create({ name: 'relaynoat2', unusual: { seccomp: { syscall: 'openat2', errno: '38' } } }), // ENOSYS
  ]);
  for (const c of [plain, noOpenat2]) await plant(c);
});
after(async () => {
  for (const s of sleepers) s.kill('SIGKILL');
  await Promise.all(runners.map((r) => r.stop()));
  await bed.dispose();
  rmSync(HOST_DIR, { recursive: true, force: true });
});

describe('the relay reads files inside the container root', () => {
  test('control: a true child of init reads the host file through the magic link', async () => {
    const out = await runner.run({ target: targetOf(plain), mode: 'exec', argv: ['cat', '/links/magic'], timeoutMs: 30_000, outputCap: 4096 });
    assert.equal(out.code, 0, out.stderr.toString());
    assert.equal(out.stdout.toString(), HOST_TEXT, 'the way out exists: only the relay must not take it');
  });

  for (const [name, which, magicErrno] of [
    ['openat2 with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS', (): TestContainer => plain, 'ELOOP'],
    ['seccomp refuses openat2: resolved by hand, component by component', (): TestContainer => noOpenat2, null],
  ] as const) {
    test(`${name}: absolute, "..", directory and magic links end inside the root`, async () => {
      const [direct, absolute, dotdot, up, magic] = await relayRead(which(), [
        `${HOST_DIR}/resolv.conf`,
        '/links/absolute',
        '/links/dotdot',
        `/links/up${HOST_DIR}/resolv.conf`,
        '/links/magic',
      ]);
      for (const [what, r] of [['direct', direct], ['absolute', absolute], ['dotdot', dotdot], ['up', up]] as const) {
        assert.deepEqual(r, { ok: true, text: CONTAINER_TEXT }, `${what}: the container's file`);
      }
      // openat2 refuses the magic link; by hand, its readlink text ("/") is resolved in the root
      if (magicErrno) assert.deepEqual(magic, { ok: false, errno: magicErrno });
      else assert.deepEqual(magic, { ok: true, text: CONTAINER_TEXT });
    });
  }

  test('what the relay must still do: files that are not regular, missing ones, and a symlink loop fail', async () => {
    for (const c of [plain, noOpenat2]) {
      const [dir, missing, loop, dev] = await relayRead(c, ['/links', '/links/none', '/links/loop', '/dev/null']);
      assert.deepEqual(dir, { ok: false, errno: 'EINVAL' });
      assert.deepEqual(missing, { ok: false, errno: 'ENOENT' });
      assert.deepEqual(loop, { ok: false, errno: 'ELOOP' });
      assert.deepEqual(dev, { ok: false, errno: 'EINVAL' });
    }
  });
});
