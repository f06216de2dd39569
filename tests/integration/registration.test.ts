import assert from 'node:assert/strict';
import { readFileSync, readlinkSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BrokerClient } from '../../src/client/broker-client.js';
import type { RegistrationInfo } from '../../src/common/types.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { takePid } from '../helpers/pid-reuse.js';
import { cliIn, mountTmpfs, registerIn } from '../helpers/in-container.js';
import { Testbed, type TestContainer } from '../testbed/index.js';
import { until } from '../helpers/until.js';

type ErrorJson = { error: { code: string; message: string } };

const broker = new BrokerProcess();
const bed = new Testbed();
let a: TestContainer;
let b: TestContainer;

before(async () => {
  await broker.start();
  [a, b] = await Promise.all([bed.create({ name: 'rega' }), bed.create({ name: 'regb' })]);
  await mountTmpfs(a, '/mnt/one'); // one at a time per container: the first covers /mnt
  await mountTmpfs(a, '/mnt/two');
  await mountTmpfs(b, '/mnt/one');
});
after(async () => {
  await bed.dispose();
  await broker.dispose();
});

function inode(pid: number | 'self', type: string): number {
  return Number(/\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/ns/${type}`))![1]);
}

async function admin<T>(op: string, params: Record<string, unknown> = {}): Promise<T> {
  const client = await BrokerClient.connect(broker.adminSocket);
  try {
    return await client.request<T>(op, params);
  } finally {
    client.close();
  }
}

async function adminError(op: string, params: Record<string, unknown>): Promise<string> {
  try {
    await admin(op, params);
  } catch (err) {
    return (err as { code: string }).code;
  }
  return 'no error';
}

describe('registration from inside containers', () => {
  let a1: RegistrationInfo;
  let a2: RegistrationInfo;
  let b1: RegistrationInfo;

  test('a container process registers: P0 is its pid namespace, the init is its init', async () => {
    a1 = await registerIn(a, broker.tenantSocket, '/mnt/one');
    assert.match(a1.id, /^r-[0-9a-f]{12}$/);
    assert.equal(a1.state, 'live');
    assert.equal(a1.mountpoint, '/mnt/one');
    assert.equal(a1.fstype, 'tmpfs', 'fstype read from the mounter\'s mountinfo');
    assert.equal(a1.context.initPid, a.initPid);
    assert.equal(a1.context.pidns, inode(a.initPid, 'pid'));
    assert.equal(a1.context.userns, inode(a.initPid, 'user'));
    assert.equal(a1.mounter.uid, a.uidBase, 'the mounter as the kernel saw it: container root = uidBase on the host');
    const mountinfo = readFileSync(`/proc/${a.initPid}/mountinfo`, 'utf8');
    assert.match(mountinfo, / \/mnt\/one .* - tmpfs ub-rega /, 'the mount exists only in the container');
    assert.doesNotMatch(readFileSync('/proc/self/mountinfo', 'utf8'), / \/mnt\/one /);
  });

  test('two mounts in one container share one context; two containers get two', async () => {
    a2 = await registerIn(a, broker.tenantSocket, '/mnt/two');
    b1 = await registerIn(b, broker.tenantSocket, '/mnt/one');
    assert.equal(a2.context.id, a1.context.id);
    assert.notEqual(a2.mountId, a1.mountId);
    assert.notEqual(b1.context.id, a1.context.id);
    assert.equal(b1.context.initPid, b.initPid);
    const all = await admin<RegistrationInfo[]>('list');
    assert.deepEqual(new Set(all.map((r) => r.id)), new Set([a1.id, a2.id, b1.id]));
  });

  test('lookups by id, mount id and path', async () => {
    assert.equal((await admin<RegistrationInfo>('show', { id: a2.id })).mountpoint, '/mnt/two');
    assert.equal((await admin<RegistrationInfo>('show', { mountId: b1.mountId })).id, b1.id);
    assert.equal(await adminError('show', { path: '/mnt/one' }), 'E_BAD_REQUEST', 'two containers use /mnt/one: ambiguous for host root');
    const mine = await cliIn<RegistrationInfo[]>(b, ['list', '--socket', broker.tenantSocket]);
    assert.deepEqual(mine.json.map((r) => r.id), [b1.id], 'a container lists only its own context');
    const show = await cliIn<RegistrationInfo>(b, ['show', b1.id, '--socket', broker.tenantSocket]);
    assert.equal(show.json.id, b1.id);
  });

  test('a container cannot show, unregister or register for another container', async () => {
    const show = await cliIn<ErrorJson>(b, ['show', a1.id, '--socket', broker.tenantSocket]);
    assert.equal(show.json.error.code, 'E_NOT_FOUND');
    assert.equal(show.code, 4);
    const unreg = await cliIn<ErrorJson>(b, ['unregister', a1.id, '--socket', broker.tenantSocket]);
    assert.equal(unreg.json.error.code, 'E_NOT_FOUND');
    assert.equal((await admin<RegistrationInfo>('show', { id: a1.id })).state, 'live', 'still registered');
    // The protocol has no way to name another process: extra fields are refused.
    const script = `
      const { BrokerClient } = await import(${JSON.stringify(new URL('../../src/client/broker-client.js', import.meta.url).href)});
      const c = await BrokerClient.connect(${JSON.stringify(broker.tenantSocket)});
      for (const params of [{ mountpoint: '/mnt/one', pid: ${a.initPid} }, { mountpoint: '/mnt/one', initPid: 1 }]) {
        try { await c.request('register', params); console.log('accepted'); } catch (e) { console.log(e.code); }
      }
      c.close();`;
    const r = await b.exec([process.execPath, '--input-type=module', '-e', script]);
    assert.deepEqual(r.stdout.trim().split('\n'), ['E_BAD_REQUEST', 'E_BAD_REQUEST'], r.stderr);
  });

  test('a container process without CAP_SYS_ADMIN cannot register', async () => {
    const r = await cliIn<ErrorJson>(a, ['register', '--socket', broker.tenantSocket, '--mount', '/mnt/one'], 1000);
    assert.equal(r.json.error.code, 'E_PERMISSION');
    assert.equal(r.code, 3);
  });

  test('host-only ops are refused on the tenant socket', async () => {
    const r = await cliIn<ErrorJson>(a, ['exec', '--socket', broker.tenantSocket, '--mount', a1.id, '--', '/bin/true']);
    assert.equal(r.json.error.code, 'E_PERMISSION');
  });

  test('the mounter unregisters its own registration', async () => {
    const r = await cliIn<{ removed: boolean }>(a, ['unregister', a2.id, '--socket', broker.tenantSocket]);
    assert.equal(r.json.removed, true);
    assert.equal(await adminError('show', { id: a2.id }), 'E_NOT_FOUND');
  });
});

describe('many registrations', () => {
  test('`list` of more than it serialises at once (500): every one, in one answer; a container sees only its own', async () => {
    /** Each connection has its own rate bucket (500/s, burst 1000): 100 requests per connection, 10 at a time. */
    const each = async <T>(items: readonly T[], fn: (c: BrokerClient, item: T) => Promise<unknown>) => {
      for (let i = 0; i < items.length; i += 100) {
        const client = await BrokerClient.connect(broker.adminSocket);
        try {
          for (let j = i; j < Math.min(i + 100, items.length); j += 10) await Promise.all(items.slice(j, j + 10).map((it) => fn(client, it)));
        } finally {
          client.close();
        }
      }
    };
    const ids: string[] = [];
    try {
      await each(Array.from({ length: 1100 }, (_, i) => i), async (c) => ids.push((await c.request<RegistrationInfo>('register', { mountpoint: '/' })).id));
      const listed = await admin<RegistrationInfo[]>('list');
      const seen = new Set(listed.map((r) => r.id));
      assert.equal(seen.size, listed.length, 'no registration twice');
      assert.equal(ids.length, 1100);
      assert.ok(ids.every((id) => seen.has(id)), 'every one listed');
      assert.equal(listed.find((r) => r.id === ids[1099])?.mountpoint, '/');
      const inA = await cliIn<RegistrationInfo[]>(a, ['list', '--socket', broker.tenantSocket]);
      assert.equal(inA.code, 0);
      const mine = new Set(ids);
      assert.ok(inA.json.every((r) => !mine.has(r.id)), "the host's registrations are not a container's to see");
    } finally {
      await each(ids, (c, id) => c.request('unregister', { id }));
    }
  });
});

describe('the walk rule in its other cases', () => {
  test('nested pid namespace owned by the same user namespace: the walk stops at the container\'s', async () => {
    const c = await bed.create({ name: 'regnest' });
    await mountTmpfs(c, '/mnt/n');
    const h = await c.startNestedPidns([process.execPath, (await import('../helpers/broker-process.js')).CLI,
      'register', '--socket', broker.tenantSocket, '--mount', '/mnt/n', '--json']);
    const r = await h.wait();
    assert.equal(r.code, 0, r.stderr);
    const reg = JSON.parse(r.stdout) as RegistrationInfo;
    assert.equal(h.nsPids.length, 3, 'host, container, nested');
    assert.equal(reg.context.pidns, inode(c.initPid, 'pid'));
    assert.equal(reg.context.initPid, c.initPid);
  });

  test('pid namespace owned by a parent user namespace: E_NS_NOT_OWNED and exit status 5', async () => {
    const { CLI } = await import('../helpers/broker-process.js');
    const h = await a.startChildUserns([process.execPath, CLI, 'register', '--socket', broker.tenantSocket, '--mount', '/', '--json']);
    const r = await h.wait();
    assert.equal((JSON.parse(r.stdout) as ErrorJson).error.code, 'E_NS_NOT_OWNED');
    assert.equal(r.code, 5);
    await until('the refusal to be logged', () => /not owned by the user namespace/.test(broker.output));
  });

  test('a container sharing the host user namespace: the walk reaches the host pid namespace', async () => {
    const c = await bed.create({ name: 'regshared', shareHostUserns: true });
    await mountTmpfs(c, '/mnt/s');
    const r = await cliIn<RegistrationInfo>(c, ['register', '--socket', broker.tenantSocket, '--mount', '/mnt/s']);
    assert.equal(r.code, 0, JSON.stringify(r.json));
    assert.equal(r.json.context.pidns, inode('self', 'pid'), 'P0 is the host (broker) pid namespace');
    assert.equal(r.json.context.userns, inode('self', 'user'));
    assert.equal(r.json.context.initPid, 1);
    await admin('unregister', { id: r.json.id });
  });
});

describe('init death, pid reuse and restarts', () => {
  test('init killed: init-exited within a second, upcalls fail with E_INIT_EXITED; a reused pid is never taken for it', async () => {
    const c = await bed.create({ name: 'regdie' });
    await mountTmpfs(c, '/mnt/d');
    const reg = await registerIn(c, broker.tenantSocket, '/mnt/d');
    assert.equal((await admin<{ code: number }>('exec', { mount: reg.id, argv: ['/bin/true'] })).code, 0, 'upcalls work while init lives');
    const oldPid = c.initPid;
    await c.stop();
    const deadline = Date.now() + 1000;
    let state = 'live';
    while (Date.now() < deadline && state === 'live') {
      state = (await admin<RegistrationInfo>('show', { id: reg.id })).state;
      if (state === 'live') await sleep(50);
    }
    assert.equal(state, 'init-exited', 'marked dead within a second');
    assert.equal(await adminError('exec', { mount: reg.id, argv: ['/bin/true'] }), 'E_INIT_EXITED');

    // Pid reuse: make the kernel hand the dead init's pid to a new host process (clone3 with set_tid, as CRIU does).
    const impostor = await takePid(oldPid);
    try {
      assert.equal(impostor.pid, oldPid, 'the old init pid now names another process');
      const after = await admin<RegistrationInfo>('show', { id: reg.id });
      assert.equal(after.state, 'init-exited');
      assert.equal(await adminError('exec', { mount: reg.id, argv: ['/bin/true'] }), 'E_INIT_EXITED');
      // And across a restart the record is dropped, not re-pointed at the impostor.
      await broker.stop('SIGKILL');
      await broker.start();
      assert.equal(await adminError('show', { id: reg.id }), 'E_NOT_FOUND');
      const line = broker.output.split('\n').find((l) => l.includes('dropped stale registration') && l.includes(reg.id));
      assert.ok(line, 'the drop is logged');
      assert.match(line, /start time differs/, 'and says why');
    } finally {
      impostor.kill('SIGKILL');
    }
  });

  test('broker SIGKILLed and restarted: every live registration is back', async () => {
    const before = await admin<RegistrationInfo[]>('list');
    assert.ok(before.length >= 2);
    await broker.stop('SIGKILL');
    await broker.start();
    const restored = await admin<RegistrationInfo[]>('list');
    assert.deepEqual(restored.map((r) => r.id).sort(), before.filter((r) => r.state === 'live').map((r) => r.id).sort());
    for (const r of restored) {
      assert.equal(r.state, 'live');
      assert.equal((await admin<{ code: number }>('exec', { mount: r.id, argv: ['/bin/true'] })).code, 0);
    }
  });
});

describe('example mount helpers register real mounts from inside a container', () => {
  for (const helper of ['c', 'ts'] as const) {
    test(`${helper === 'c' ? 'C (ub-mount-helper, C client API)' : 'TypeScript (Node client)'} helper mounts a tmpfs and registers it`, async () => {
      const { PACKAGE_ROOT } = await import('../../src/common/paths.js');
      const path = `/mnt/${helper}-helper`;
      await b.check(['mkdir', '-p', path]);
      const argv = helper === 'c'
        ? [`${PACKAGE_ROOT}/build/Release/ub-mount-helper`, '--socket', broker.tenantSocket, path]
        : [process.execPath, `${PACKAGE_ROOT}/dist/examples/ts-mount-helper/mount-helper.js`, '--socket', broker.tenantSocket, path];
      const r = await b.exec(argv);
      assert.equal(r.code, 0, r.stderr);
      const id = r.stdout.trim();
      const reg = await admin<RegistrationInfo>('show', { id });
      assert.equal(reg.mountpoint, path);
      assert.equal(reg.fstype, 'tmpfs');
      assert.equal(reg.context.initPid, b.initPid);
      assert.match(readFileSync(`/proc/${b.initPid}/mountinfo`, 'utf8'), new RegExp(` ${path} `));
      await admin('unregister', { id });
    });
  }
});

describe('exec --tty', () => {
  test('an operator gets a terminal inside the container, as a child of its init', async () => {
    await mountTmpfs(b, '/mnt/tty');
    const reg = await cliIn<RegistrationInfo>(b, ['register', '--socket', broker.tenantSocket, '--mount', '/mnt/tty']);
    const { runCli } = await import('../helpers/broker-process.js');
    const r = await runCli(['exec', '--socket', broker.adminSocket, '--mount', reg.json.id, '--tty', '--',
      'sh', '-c', 'test -t 0 && echo "tty:yes"; hostname; exit 3']);
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.match(r.stdout, /tty:yes/, 'stdin is a terminal');
    assert.match(r.stdout, /regb/, 'the container\'s hostname: its uts namespace');
    await admin('unregister', { id: reg.json.id });
  });
});
