/**
 * A registration turns `unmounted` when its mount goes (docs/walk-rule.md,
 * case 9), by each method the broker picks by kernel: fanotify FAN_MNT_DETACH
 * (this host, 6.15+), statmount polling (forced: UB_KERNEL_COMPAT=no-fanotify-mnt)
 * and mountinfo polling (forced: no-statmount-ns). Real tmpfs mounts in a real
 * container's mount namespace, registered by host root with `register --for-pid`;
 * then a mount namespace whose viewer (the process registered for) exits while
 * another process keeps it, and (by namespace id) one that goes with its last
 * process, and a mount moved within its namespace. No time is asserted: the latency is measured by bench/mount-watch-bench.ts.
 */
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { BrokerClient } from '../../src/client/broker-client.js';
import type { RegistrationInfo } from '../../src/common/types.js';
import { BrokerProcess, runCli } from '../helpers/broker-process.js';
import { mountTmpfs } from '../helpers/in-container.js';
import { until } from '../helpers/until.js';
import { Testbed, type TestContainer } from '../testbed/index.js';
import type { ChildHandle } from '../testbed/child-handles.js';

const bed = new Testbed();
let c: TestContainer;
const started: ChildHandle[] = [];

before(async () => {
  c = await bed.create({ name: 'mwatch' });
  await mountTmpfs(c, '/mnt/base'); // puts a tmpfs on /mnt, where each method makes its directories
});

after(async () => {
  for (const h of started) await h.kill('SIGKILL').catch(() => false);
  await bed.dispose();
});

const mntns = (pid: number) => readlinkSync(`/proc/${pid}/ns/mnt`);
const mountedAt = (pid: number, path: string) => {
  try {
    return readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').some((l) => l.split(' ')[4] === path);
  } catch {
    return false;
  }
};
const gone = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');
  } catch {
    return true;
  }
};

/** The pids of a process's children whose comm is `comm`. */
function childrenNamed(pid: number, comm: string): number[] {
  const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return kids.filter((k) => {
    try {
      return readFileSync(`/proc/${k}/comm`, 'utf8').trim() === comm;
    } catch {
      return false;
    }
  });
}

const METHODS = [
  { method: 'fanotify', compat: null },
  { method: 'statmount', compat: 'no-fanotify-mnt' },
  { method: 'mountinfo', compat: 'no-statmount-ns' },
] as const;

for (const { method, compat } of METHODS) {
  describe(`unmount seen by ${method}${compat ? ` (UB_KERNEL_COMPAT=${compat})` : ''}`, () => {
    const broker = new BrokerProcess();
    const dir = (name: string) => `/mnt/${method}-${name}`;

    before(async () => {
      // The fanotify suite is this kernel's own choice: a UB_KERNEL_COMPAT in the caller's environment must not leak in.
      await broker.start([], compat === null ? ['env', '-u', 'UB_KERNEL_COMPAT'] : ['env', `UB_KERNEL_COMPAT=${compat}`]);
      await c.check(['mkdir', '-p', dir('one'), dir('two'), dir('v'), dir('solo')]);
    });
    after(() => broker.dispose());

    const registerFor = async (pid: number, path: string): Promise<RegistrationInfo> => {
      const r = await runCli(['register', '--socket', broker.adminSocket, '--for-pid', String(pid), '--mount', path, '--fstype', 'cifs', '--source', `//files-${method}.test/share`, '--json']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const reg = JSON.parse(r.stdout) as RegistrationInfo;
      assert.equal(reg.state, 'live');
      return reg;
    };
    const stateOf = async (id: string): Promise<string> => {
      const client = await BrokerClient.connect(broker.adminSocket);
      try {
        return (await client.show({ id })).state;
      } finally {
        client.close();
      }
    };
    /** The broker's audit line saying `id` turned unmounted. */
    const logLines = () => broker.output.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    const unmountedLine = (id: string) => logLines().find((l) => l['message'] === 'unmounted' && l['id'] === id);
    const waitUnmounted = async (id: string) => {
      await until(`${id} to turn unmounted`, async () => (await stateOf(id)) === 'unmounted', 20_000, 50);
      // Log lines go out once per event-loop turn (TurnBatchedStream), so the audit line may follow the answer.
      await until(`the audit line of ${id}`, () => unmountedLine(id) !== undefined, 20_000, 50);
      const line = unmountedLine(id);
      assert.equal(line?.['method'], method, `the audit line names the method: ${JSON.stringify(line)}`);
      assert.equal(line?.['audit'], true);
    };

    /** A process of the container in a mount namespace of its own, with a tmpfs at dir(name) there. */
    const inOwnMntns = async (name: string): Promise<ChildHandle> => {
      const p = await c.spawn(['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
        `mount -t tmpfs -o size=1m ub-${method}-${name} ${dir(name)} && exec sleep infinity`]);
      started.push(p);
      await until(`the mount at ${dir(name)}`, () => mountedAt(p.hostPid, dir(name)));
      return p;
    };
    /** Such a process alone in its namespace, registered for. */
    const soloMount = async () => {
      const solo = await inOwnMntns('solo');
      return { solo, reg: await registerFor(solo.hostPid, dir('solo')) };
    };

    test('umount in the container: that registration turns unmounted, the other stays live', async () => {
      await c.check(['mount', '-t', 'tmpfs', '-o', 'size=1m', `ub-${method}-1`, dir('one')]);
      await c.check(['mount', '-t', 'tmpfs', '-o', 'size=1m', `ub-${method}-2`, dir('two')]);
      const one = await registerFor(c.initPid, dir('one'));
      const two = await registerFor(c.initPid, dir('two'));
      assert.equal(one.mountIdKind, 'unique', 'this kernel has STATX_MNT_ID_UNIQUE');
      const pumps = childrenNamed(broker.pid!, 'upcall-mount-wa');
      assert.equal(pumps.length, method === 'fanotify' ? 1 : 0, `upcall-mount-watch runs only for fanotify: ${pumps.join(' ')}`);
      await c.check(['umount', dir('one')]);
      await waitUnmounted(one.id);
      assert.equal(await stateOf(two.id), 'live', 'the other mount is still there');
      await c.check(['umount', dir('two')]);
      await waitUnmounted(two.id);
    });

    test('the process registered for exits, another keeps its mount namespace: the umount there is still seen', async () => {
      const viewer = await inOwnMntns('v');
      const keeper = await c.spawn(['nsenter', `--mount=/proc/${viewer.nsPids[1]}/ns/mnt`, 'sleep', 'infinity']);
      started.push(keeper);
      await until('the keeper in the viewer\'s mount namespace', () => mntns(keeper.hostPid) === mntns(viewer.hostPid));
      assert.notEqual(mntns(viewer.hostPid), mntns(c.initPid), 'a mount namespace of its own, not the init\'s');
      const reg = await registerFor(viewer.hostPid, dir('v'));
      assert.equal(reg.context.initPid, c.initPid, 'registered for the container');
      assert.equal(await viewer.kill('SIGKILL'), true);
      await until('the viewer to exit', () => gone(viewer.hostPid));
      assert.equal(await stateOf(reg.id), 'live', 'the namespace, and the mount in it, outlive the viewer');
      await c.check(['nsenter', `--mount=/proc/${keeper.nsPids[1]}/ns/mnt`, 'umount', dir('v')]);
      await waitUnmounted(reg.id);
    });

    test(`a mount moved within its namespace ${method === 'mountinfo' ? 'is no longer at its mount point: unmounted' : 'is the same mount: still live, and its later umount is seen'}`, async () => {
      await c.check(['mkdir', '-p', dir('from'), dir('to'), dir('witness')]);
      await c.check(['mount', '-t', 'tmpfs', '-o', 'size=1m', `ub-${method}-m`, dir('from')]);
      await c.check(['mount', '-t', 'tmpfs', '-o', 'size=1m', `ub-${method}-w`, dir('witness')]);
      const reg = await registerFor(c.initPid, dir('from'));
      // A registration made after the move, watched by the same method: once it is seen gone, the move was looked at.
      await c.check(['mount', '--no-mtab', '--move', dir('from'), dir('to')]);
      const witness = await registerFor(c.initPid, dir('witness'));
      await c.check(['umount', dir('witness')]);
      await waitUnmounted(witness.id);
      if (method === 'mountinfo') {
        await waitUnmounted(reg.id);
        await c.check(['umount', dir('to')]);
        return;
      }
      assert.equal(await stateOf(reg.id), 'live');
      await c.check(['umount', dir('to')]);
      await waitUnmounted(reg.id);
    });

    if (method !== 'mountinfo') {
      test('the last process of the mount namespace exits: the namespace and its mounts are gone', async () => {
        const { solo, reg } = await soloMount();
        assert.equal(await stateOf(reg.id), 'live');
        assert.equal(await solo.kill('SIGKILL'), true);
        await waitUnmounted(reg.id);
      });
    } else {
      test('mountinfo: once no process is left in the mount namespace, nothing more is known, and the state is not guessed', async () => {
        const { solo, reg } = await soloMount();
        assert.equal(await solo.kill('SIGKILL'), true);
        await until('the solo process to exit', () => gone(solo.hostPid));
        // The watch ends at the next poll that finds no process in the namespace; the log says so.
        const ended = () => logLines().find((l) => String(l['message']).startsWith('mount watch ended') && l['id'] === reg.id);
        await until('the watch to end', () => ended() !== undefined, 20_000, 50);
        assert.equal(ended()?.['reason'], 'no process left in the mount namespace');
        assert.equal(await stateOf(reg.id), 'live', 'documented: the fallback cannot tell');
      });
    }
  });
}
