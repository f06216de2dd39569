/**
 * Mounts made for a container by a privileged agent (docs/walk-rule.md, case 9):
 * `register --for-pid` and `mount --for-pid` from host root on the admin
 * socket, refused to tenants; a registration turns `unmounted` when its mount goes
 * (how soon is measured by `npm run bench -- --only mount-watch`, not asserted here). The network filesystems themselves run in the
 * namespace test VMs (tests/integration/vm-*.test.ts); here a tmpfs stands in.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BrokerClient } from '../../src/client/broker-client.js';
import type { RegistrationInfo } from '../../src/common/types.js';
import { BrokerProcess, runCli } from '../helpers/broker-process.js';
import { cliIn, mountTmpfs } from '../helpers/in-container.js';
import { Testbed, type TestContainer } from '../testbed/index.js';
import { scaled } from '../testbed/time-scale.js';
import { until } from '../helpers/until.js';

const broker = new BrokerProcess();
const bed = new Testbed();
let c: TestContainer;
const tag = `ubm${process.pid}${randomBytes(3).toString('hex')}`;

interface Failure { error: { code: string; message: string } }

async function cli<T>(args: string[]): Promise<{ code: number | null; json: T; raw: string }> {
  const r = await runCli([...args, '--socket', broker.adminSocket, '--json']);
  try {
    return { code: r.code, json: JSON.parse(r.stdout) as T, raw: r.stdout + r.stderr };
  } catch {
    throw new Error(`no JSON from ${args.join(' ')}: ${r.stdout} ${r.stderr}`);
  }
}

/** `show` (over the socket: the CLI takes a second to start) until the registration's state is `state`, for up to `ms`. */
async function waitState(id: string, state: string, ms: number): Promise<void> {
  const client = await BrokerClient.connect(broker.adminSocket);
  try {
    const started = performance.now();
    for (;;) {
      const r = await client.show({ id });
      if (r.state === state) return;
      if (performance.now() - started > ms) assert.fail(`${id} is ${r.state}, not ${state}, after ${ms} ms`);
      await sleep(50);
    }
  } finally {
    client.close();
  }
}

/** The broker's audit line `message` about registration `id`. */
function audit(message: string, id: string): Record<string, unknown> | undefined {
  return broker.output.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((l) => l['message'] === message && l['id'] === id && l['audit'] === true);
}

before(async () => {
  await broker.start();
  c = await bed.create({ name: 'mfc' });
  await mountTmpfs(c, '/mnt/agent');
  await c.check(['mkdir', '-p', '/mnt/for', '/mnt/gone']);
});

after(async () => {
  try {
    await bed.dispose();
  } finally {
    await broker.dispose();
  }
});

describe('register --for-pid', () => {
  test('host root registers a mount the agent made, for the container of the pid; it turns unmounted once umounted', async () => {
    const r = await cli<RegistrationInfo>(['register', '--for-pid', String(c.initPid), '--mount', '/mnt/agent', '--fstype', 'cifs', '--source', `//files.${tag}.test/share`]);
    assert.equal(r.code, 0, r.raw);
    assert.equal(r.json.state, 'live');
    assert.equal(r.json.fstype, 'cifs');
    assert.equal(r.json.source, `//files.${tag}.test/share`);
    assert.equal(r.json.context.initPid, c.initPid);
    assert.equal(r.json.context.pidns, c.ns.pid, 'the container\'s own context, not the agent\'s (the host)');
    await c.check(['umount', '/mnt/agent']);
    // How soon is a figure of `npm run bench -- --only mount-watch`, not an assertion here.
    await waitState(r.json.id, 'unmounted', scaled(10_000));
    // Log lines go out once per event-loop turn, so an audit line may follow the answer it belongs to.
    await until('the unmounted audit line', () => audit('unmounted', r.json.id) !== undefined);
  });

  test('a tenant gets E_PERMISSION', async () => {
    await mountTmpfs(c, '/mnt/tenant');
    const r = await cliIn<Failure>(c, ['register', '--socket', broker.tenantSocket, '--for-pid', String(c.initPid), '--mount', '/mnt/tenant']);
    assert.equal(r.json.error.code, 'E_PERMISSION', JSON.stringify(r.json));
    assert.equal(r.code, 3);
  });
});

describe('mount --for-pid', () => {
  test('mounts in the container\'s mount namespace, registers it live for the container\'s context, and sees it go', async () => {
    const source = `ub-${tag}`;
    const r = await cli<RegistrationInfo>(['mount', '--for-pid', String(c.initPid), '-t', 'tmpfs', '-o', 'size=1m', source, '/mnt/for']);
    assert.equal(r.code, 0, r.raw);
    assert.equal(r.json.state, 'live');
    assert.equal(r.json.fstype, 'tmpfs');
    assert.equal(r.json.source, source);
    assert.equal(r.json.context.initPid, c.initPid);
    const inside = await c.check(['sh', '-c', 'cat /proc/self/mountinfo']);
    assert.match(inside, new RegExp(` /mnt/for .* - tmpfs ${source} `), 'mounted in the container');
    assert.doesNotMatch(readFileSync('/proc/self/mountinfo', 'utf8'), new RegExp(source), 'not on the host');
    await until('the mounted-for audit line', () => audit('mounted-for', r.json.id) !== undefined);
    assert.equal(audit('mounted-for', r.json.id)?.['forPid'], c.initPid, 'one audit line names the mount and whom it was for');
    await c.check(['umount', '/mnt/for']);
    await waitState(r.json.id, 'unmounted', 3000);
  });

  test('a failing mount registers nothing and returns the helper\'s message (E_MOUNT_FAILED, exit 16)', async () => {
    const before = (await cli<RegistrationInfo[]>(['list'])).json.length;
    const r = await cli<Failure>(['mount', '--for-pid', String(c.initPid), '-t', 'tmpfs', `ub-${tag}`, '/mnt/no-such-dir']);
    assert.equal(r.json.error.code, 'E_MOUNT_FAILED', r.raw);
    assert.equal(r.code, 16);
    assert.match(r.json.error.message, /mount point does not exist|No such file or directory/, 'mount(8)\'s own message');
    assert.equal((await cli<RegistrationInfo[]>(['list'])).json.length, before, 'nothing registered');
  });

  test('a tenant gets E_PERMISSION; a pid that does not exist E_NO_PROCESS', async () => {
    const t = await cliIn<Failure>(c, ['mount', '--socket', broker.tenantSocket, '--for-pid', '1', '-t', 'tmpfs', 'x', '/mnt/gone']);
    assert.equal(t.json.error.code, 'E_PERMISSION', JSON.stringify(t.json));
    const gone = await cli<Failure>(['mount', '--for-pid', String(2 ** 22), '-t', 'tmpfs', 'x', '/mnt/gone']);
    assert.equal(gone.json.error.code, 'E_NO_PROCESS', gone.raw);
  });
});
