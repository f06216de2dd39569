/**
 * DNS relays kept between upcalls (RelayPool), on the real kernel: the relay
 * is a child of the container's init that serves the next upcall of the same
 * container, reads its files again each time, is replaced when it was killed
 * inside the container, and ends once idle.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BrokerClient } from '../../src/client/broker-client.js';
import type { RegistrationInfo } from '../../src/common/types.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { cliIn, mountTmpfs } from '../helpers/in-container.js';
import { containerFiles } from '../testbed/init-protocol.js';
import { Testbed, type TestContainer } from '../testbed/index.js';
import { until } from '../helpers/until.js';

const IDLE_MS = 600;
const broker = new BrokerProcess();
const bed = new Testbed();
let c: TestContainer;
let other: TestContainer;
const regs = new Map<TestContainer, string>();

/**
 * Children of the container's init that are DNS relays: their stderr is a pipe and, idle, they hold
 * nothing past fd 2 (a template holds its control socket as fd 4, and as fds 0-3 once it has served its
 * first request, until when its 0-2 are that request's).
 */
function relaysOf(t: TestContainer): number[] {
  let kids: number[];
  try {
    kids = readFileSync(`/proc/${t.initPid}/task/${t.initPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
  return kids.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('upcall-') && readlinkSync(`/proc/${pid}/fd/2`).startsWith('pipe:') && !existsSync(`/proc/${pid}/fd/4`);
    } catch {
      return false;
    }
  });
}

async function resolve(t: TestContainer, name: string): Promise<string | null> {
  const client = await BrokerClient.connect(broker.adminSocket);
  try {
    return (await client.request<{ text: string | null }>('resolve', { mount: regs.get(t)!, description: name, callout: '' })).text;
  } finally {
    client.close();
  }
}

before(async () => {
  const config = join(broker.dir, 'config.json');
  writeFileSync(config, JSON.stringify({ dns: { relayReuseMs: 5000, relayIdleMs: IDLE_MS } }));
  await broker.start(['--config', config]);
  [c, other] = await Promise.all([
    bed.create({ name: 'pool', hosts: '192.0.2.20 files.test' }),
    bed.create({ name: 'poolb', hosts: '192.0.2.120 files.test' }),
  ]);
  for (const t of [c, other]) {
    await mountTmpfs(t, '/mnt/pool');
    const r = await cliIn<RegistrationInfo>(t, ['register', '--socket', broker.tenantSocket, '--mount', '/mnt/pool']);
    assert.equal(r.code, 0, JSON.stringify(r.json));
    regs.set(t, r.json.id);
  }
});
after(async () => {
  await bed.dispose();
  await broker.dispose();
});

describe('DNS relays kept between upcalls', () => {
  test('the next upcall of the container is served by the same relay, which reads the files again', async () => {
    assert.deepEqual(relaysOf(c), []);
    assert.equal(await resolve(c, 'files.test'), '192.0.2.20');
    const kept = relaysOf(c);
    assert.equal(kept.length, 1, 'one relay, a child of init, kept after the upcall');
    writeFileSync(containerFiles(c.dir).hosts, '192.0.2.21 files.test\n'); // in place: it is bind-mounted
    assert.equal(await resolve(c, 'files.test'), '192.0.2.21', 'the changed /etc/hosts is read');
    assert.deepEqual(relaysOf(c), kept, 'no new relay: the kept one served it');
    assert.equal(await resolve(other, 'files.test'), '192.0.2.120', "another container never gets this one's relay");
    assert.equal(relaysOf(other).length, 1);
    assert.deepEqual(relaysOf(c), kept);
  });

  test('a relay killed inside the container while idle is replaced; the upcall does not fail', async () => {
    const [relay] = relaysOf(c);
    assert.ok(relay, 'a kept relay');
    const nsPid = /NSpid:.*\s(\d+)\s*$/m.exec(readFileSync(`/proc/${relay}/status`, 'utf8'))![1]!;
    await c.check(['kill', '-9', nsPid]);
    await until('the killed relay to be gone', () => !relaysOf(c).includes(relay));
    assert.equal(await resolve(c, 'files.test'), '192.0.2.21');
    const now = relaysOf(c);
    assert.equal(now.length, 1);
    assert.notEqual(now[0], relay);
  });

  test(`an idle relay ends after relayIdleMs (${IDLE_MS} ms)`, async () => {
    assert.equal(relaysOf(c).length, 1);
    await until('the idle relays to end', () => relaysOf(c).length === 0 && relaysOf(other).length === 0, IDLE_MS + 4000);
  });
});
