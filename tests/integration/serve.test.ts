import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { after, test } from 'node:test';
import { BrokerClient } from '../../src/client/broker-client.js';
import { encodeFrame, FrameDecoder } from '../../src/server/framing.js';
import { BrokerProcess } from '../helpers/broker-process.js';

const broker = new BrokerProcess();
after(() => broker.dispose());

/** Write raw bytes and collect the frames the broker answers with until it closes or goes quiet. */
function rawExchange(path: string, bytes: Buffer, quietMs = 300): Promise<{ frames: unknown[]; closed: boolean }> {
  return new Promise((resolve) => {
    const sock = connect(path);
    const d = new FrameDecoder(1 << 20);
    const frames: unknown[] = [];
    let timer: NodeJS.Timeout;
    const done = (closed: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ frames, closed });
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => done(false), quietMs);
    };
    sock.on('data', (b) => {
      for (const f of d.push(b)) frames.push(JSON.parse(f.toString()));
      arm();
    });
    sock.on('close', () => done(true));
    sock.on('connect', () => {
      sock.write(bytes);
      arm();
    });
  });
}

test('serve: starts, listens on both sockets with their modes, answers ping', async () => {
  await broker.start();
  assert.equal(statSync(broker.adminSocket).mode & 0o777, 0o600);
  assert.equal(statSync(broker.tenantSocket).mode & 0o777, 0o666);
  const client = await BrokerClient.connect(broker.adminSocket);
  try {
    const pong = await client.request<{ peer: { pid: number; listener: string } }>('ping');
    assert.equal(pong.peer.pid, process.pid, 'the broker saw this process as the peer (SO_PEERCRED)');
    assert.equal(pong.peer.listener, 'admin');
  } finally {
    client.close();
  }
});

test('serve: garbage, oversized and half-written messages get error answers; the broker keeps serving', async () => {
  const garbage = await rawExchange(broker.adminSocket, encodeFrame('just a string'));
  assert.equal((garbage.frames[0] as { error: { code: string } }).error.code, 'E_BAD_REQUEST');
  const notJson = Buffer.concat([Buffer.from([0, 0, 0, 5]), Buffer.from('{{{{{')]);
  assert.equal(((await rawExchange(broker.adminSocket, notJson)).frames[0] as { error: { code: string } }).error.code, 'E_BAD_REQUEST');
  const huge = Buffer.from([0x7f, 0xff, 0xff, 0xff]);
  const big = await rawExchange(broker.adminSocket, huge);
  assert.equal((big.frames[0] as { error: { code: string } }).error.code, 'E_PROTOCOL');
  assert.equal(big.closed, true, 'the broker closes a stream it cannot resync');
  const half = await rawExchange(broker.adminSocket, encodeFrame({ v: 1, id: 1, op: 'ping' }).subarray(0, 9));
  assert.deepEqual(half.frames, [], 'no answer to half a message');
  const client = await BrokerClient.connect(broker.adminSocket);
  try {
    await assert.rejects(client.request('no-such-op'), (e: { code?: string }) => e.code === 'E_BAD_REQUEST');
    assert.ok(await client.request('ping'), 'still serving');
  } finally {
    client.close();
  }
});

test('serve: SIGTERM stops it with exit 0 and removes the socket files', async () => {
  assert.equal(await broker.stop('SIGTERM'), 0);
  assert.equal(existsSync(broker.adminSocket), false);
  assert.equal(existsSync(broker.tenantSocket), false);
});
