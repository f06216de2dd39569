/**
 * Registrations restored after a broker restart are watched for their unmount
 * again (docs/walk-rule.md, case 9, "After a restart"), by each method: fanotify
 * (this host), statmount (UB_KERNEL_COMPAT=no-fanotify-mnt) and mountinfo
 * (UB_KERNEL_COMPAT=all: legacy mount ids too). Real tmpfs mounts in a real
 * container, registered by host root with `register --for-pid`; the broker is
 * killed (SIGKILL) and started again on the same state directory.
 *
 * - a: still mounted at the restart, unmounted after it: turns `unmounted`;
 * - b: unmounted while the broker is down: `unmounted` as soon as it is back;
 * - c: mounted in a mount namespace of the container other than its init's,
 *   still there: stays `live`, and its later umount (there) is seen;
 * - d, e, f: records without the mount namespace (as saved before it was recorded,
 *   in a version-1 state file): d, in the init's namespace, is watched (and the
 *   namespace is saved now); e, in another namespace and still mounted, and f,
 *   unmounted meanwhile, are left `live` and not watched (nothing tells where they were);
 * - g: a tenant's own tmpfs registration is not watched, before or after.
 * No time is asserted.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RegistrationInfo } from '../../src/common/types.js';
import type { StoredRegistration } from '../../src/broker/state-store.js';
import { BrokerProcess, runCli } from '../helpers/broker-process.js';
import { mountTmpfs, registerIn } from '../helpers/in-container.js';
import { registrationState } from '../helpers/registration-state.js';
import { until } from '../helpers/until.js';
import { Testbed, type TestContainer } from '../testbed/index.js';
import type { ChildHandle } from '../testbed/child-handles.js';

const bed = new Testbed();
let c: TestContainer;
const processes: ChildHandle[] = [];

before(async () => {
  c = await bed.create({ name: 'mwrestore' });
  await mountTmpfs(c, '/mnt/base');
});

after(async () => {
  for (const p of processes) await p.kill('SIGKILL').catch(() => false);
  await bed.dispose();
});

/** The registrations on disk: the snapshot with its journals applied (as the store loads them). */
function onDisk(stateDir: string): Map<string, StoredRegistration> {
  const names = readdirSync(stateDir);
  // No snapshot before the first compaction: the journals alone.
  const snap = names.includes('registrations.json')
    ? JSON.parse(readFileSync(join(stateDir, 'registrations.json'), 'utf8')) as { generation?: number; registrations: StoredRegistration[] }
    : { generation: 0, registrations: [] };
  const out = new Map(snap.registrations.map((r) => [r.id, r]));
  const gens = names.map((n) => /^registrations\.journal\.(\d+)$/.exec(n)?.[1]).filter((g) => g !== undefined).map(Number)
    .filter((g) => g >= (snap.generation ?? 0)).sort((x, y) => x - y);
  for (const g of gens) {
    for (const line of readFileSync(join(stateDir, `registrations.journal.${g}`), 'utf8').split('\n').filter(Boolean)) {
      const op = JSON.parse(line) as { op: 'add'; reg: StoredRegistration } | { op: 'del'; id: string };
      if (op.op === 'add') out.set(op.reg.id, op.reg);
      else out.delete(op.id);
    }
  }
  return out;
}

/** The state as a release before the mount namespace was recorded wrote it: version 1, `old` ids without `mntns`. */
function rewriteAsOld(stateDir: string, old: readonly string[]): void {
  const regs = [...onDisk(stateDir).values()].map((r) => {
    if (!old.includes(r.id)) return r;
    const { mntns: _dropped, ...rest } = r;
    return rest;
  });
  for (const n of readdirSync(stateDir)) if (n.startsWith('registrations.journal.')) rmSync(join(stateDir, n));
  writeFileSync(join(stateDir, 'registrations.json'), JSON.stringify({ version: 1, registrations: regs }), { mode: 0o600 });
}

const SUITES = [
  { method: 'fanotify', compat: null },
  { method: 'statmount', compat: 'no-fanotify-mnt' },
  { method: 'mountinfo', compat: 'all' },
] as const;

for (const { method, compat } of SUITES) {
  describe(`restored registrations, unmount seen by ${method}${compat ? ` (UB_KERNEL_COMPAT=${compat})` : ''}`, () => {
    const broker = new BrokerProcess();
    const env = compat === null ? ['env', '-u', 'UB_KERNEL_COMPAT'] : ['env', `UB_KERNEL_COMPAT=${compat}`];
    const dir = (name: string) => `/mnt/r-${method}-${name}`;
    const regs: Record<string, RegistrationInfo> = {};
    /** Processes of the container, each alone in a mount namespace of its own with a tmpfs at dir(name). */
    const apart: Record<string, ChildHandle> = {};
    let outputBefore = 0;

    const logLines = (from = 0) => broker.output.slice(from).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const stateOf = (id: string) => registrationState(broker.adminSocket, id);
    const unmountedLine = (id: string) => logLines(outputBefore).find((l) => l['message'] === 'unmounted' && l['id'] === id);
    const registerFor = async (name: string, pid: number) => {
      const r = await runCli(['register', '--socket', broker.adminSocket, '--for-pid', String(pid), '--mount', dir(name), '--json']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      regs[name] = JSON.parse(r.stdout) as RegistrationInfo;
    };
    const mountApart = async (name: string) => {
      const p = await c.spawn(['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
        `mount -t tmpfs -o size=1m ub-r-${method}-${name} ${dir(name)} && exec sleep infinity`]);
      processes.push(p);
      apart[name] = p;
      await until(`the tmpfs at ${dir(name)} in its own namespace`, () => {
        try {
          return readFileSync(`/proc/${p.hostPid}/mountinfo`, 'utf8').split('\n').some((l) => l.split(' ')[4] === dir(name));
        } catch {
          return false;
        }
      }, 20_000);
      assert.notEqual(readlinkSync(`/proc/${p.hostPid}/ns/mnt`), readlinkSync(`/proc/${c.initPid}/ns/mnt`));
    };

    before(async () => {
      await broker.start([], env);
      await c.check(['mkdir', '-p', ...['a', 'b', 'c', 'd', 'e', 'f', 'g'].map(dir)]);
      for (const name of ['a', 'b', 'd', 'f', 'g']) await c.check(['mount', '-t', 'tmpfs', '-o', 'size=1m', `ub-r-${method}-${name}`, dir(name)]);
      for (const name of ['a', 'b', 'd', 'f']) await registerFor(name, c.initPid);
      for (const name of ['c', 'e']) {
        await mountApart(name);
        await registerFor(name, apart[name]!.hostPid);
      }
      regs['g'] = await registerIn(c, broker.tenantSocket, dir('g'));
      for (const r of Object.values(regs)) assert.equal(r.state, 'live');
    });
    after(() => broker.dispose());

    test('each watched registration records its mount namespace; a tenant\'s tmpfs does not', () => {
      const disk = onDisk(broker.stateDir);
      const initNs = readlinkSync(`/proc/${c.initPid}/ns/mnt`);
      for (const name of ['a', 'b', 'c', 'd', 'e', 'f']) {
        const rec = disk.get(regs[name]!.id);
        assert.ok(rec?.mntns, `${name}: ${JSON.stringify(rec)}`);
        const pid = name === 'c' || name === 'e' ? apart[name]!.hostPid : c.initPid;
        assert.equal(`mnt:[${rec.mntns.ino}]`, readlinkSync(`/proc/${pid}/ns/mnt`), `${name}: the namespace it was resolved in`);
        // The id only where the kernel names namespaces by id (not under the forced fallbacks).
        assert.equal(rec.mntns.id !== undefined, method !== 'mountinfo', `${name}: ${JSON.stringify(rec.mntns)}`);
      }
      assert.equal(`mnt:[${disk.get(regs['a']!.id)!.mntns!.ino}]`, initNs);
      assert.equal(disk.get(regs['g']!.id)?.mntns, undefined);
      assert.equal(regs['a']!.mountIdKind, method === 'mountinfo' ? 'legacy' : 'unique');
    });

    test('restart: b (unmounted while down) is unmounted at once; the rest stay live; old records load', async () => {
      assert.equal(await broker.stop('SIGKILL'), null);
      await c.check(['umount', dir('b')]);
      await c.check(['umount', dir('f')]);
      rewriteAsOld(broker.stateDir, ['d', 'e', 'f'].map((n) => regs[n]!.id));
      outputBefore = broker.output.length;
      await broker.start([], env);

      const restored = logLines(outputBefore).find((l) => l['message'] === 'registrations restored');
      assert.deepEqual({ restored: restored?.['restored'], dropped: restored?.['dropped'] }, { restored: 7, dropped: 0 }, JSON.stringify(restored));
      // a, c, d watched; b unmounted; e, f left alone (old records, not in the init's namespace); g never watched.
      assert.deepEqual(restored?.['mounts'], { watched: 3, unmounted: 1, unwatched: 2 });

      assert.equal(await stateOf(regs['b']!.id), 'unmounted', 'seen at restore, before the broker was ready');
      assert.equal(unmountedLine(regs['b']!.id)?.['method'], method);
      for (const name of ['a', 'c', 'd', 'e', 'f', 'g']) assert.equal(await stateOf(regs[name]!.id), 'live', name);

      const notWatched = (name: string) => logLines(outputBefore).find((l) => l['message'] === 'restored registration not watched for unmount; its state stays as it is' && l['id'] === regs[name]!.id);
      for (const name of ['e', 'f']) assert.match(String(notWatched(name)?.['reason']), /names no mount namespace/, name);
      for (const name of ['a', 'b', 'c', 'd', 'g']) assert.equal(notWatched(name), undefined, name);

      // d's namespace was found (its init's) and is saved with it now.
      const d = onDisk(broker.stateDir).get(regs['d']!.id);
      assert.equal(`mnt:[${d?.mntns?.ino}]`, readlinkSync(`/proc/${c.initPid}/ns/mnt`), JSON.stringify(d));
      assert.equal(onDisk(broker.stateDir).get(regs['e']!.id)?.mntns, undefined);
    });

    test('after the restart: umounts of a (init\'s namespace), c (its own namespace) and d (old record) are seen', async () => {
      await c.check(['umount', dir('a')]);
      await c.check(['umount', dir('d')]);
      await c.check(['umount', dir('g')]);
      await c.check(['nsenter', `--mount=/proc/${apart['c']!.nsPids[1]}/ns/mnt`, 'umount', dir('c')]);
      for (const name of ['a', 'c', 'd']) {
        const id = regs[name]!.id;
        await until(`${name} (${id}) to turn unmounted`, async () => (await stateOf(id)) === 'unmounted', 30_000, 50);
        // Log lines go out once per event-loop turn, so the audit line may follow the state change.
        await until(`the audit line of ${name}`, () => unmountedLine(id) !== undefined, 30_000, 50);
        const line = unmountedLine(id);
        assert.equal(line?.['method'], method, JSON.stringify(line));
        assert.equal(line?.['audit'], true);
      }
      // Not watched: their states are left as they were (e is still mounted; f and g are gone, which nothing looked at).
      for (const name of ['e', 'f', 'g']) assert.equal(await stateOf(regs[name]!.id), 'live', name);
      assert.equal(unmountedLine(regs['g']!.id), undefined);
    });
  });
}
