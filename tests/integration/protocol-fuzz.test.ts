import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { BrokerClient } from '../../src/client/broker-client.js';
import { encodeFrame, FrameDecoder } from '../../src/server/framing.js';
import { BrokerProcess } from '../helpers/broker-process.js';

const TOTAL = Number(process.env['UB_FUZZ_MESSAGES'] ?? 100_000);
const SEED = Number(process.env['UB_FUZZ_SEED'] ?? 20261126);
const broker = new BrokerProcess();

before(async () => {
  // Rate limits high enough that the fuzzer reaches the parser rather than the limiter.
  const cfg = join(broker.dir, 'fuzz.json');
  writeFileSync(cfg, JSON.stringify({ limits: { messagesPerSecond: 1e6, messageBurst: 1e6, connectionInFlight: 4096, tenantInFlight: 4096, globalInFlight: 8192 } }));
  await broker.start(['--config', cfg]);
});
after(() => broker.dispose());

const ops = fc.constantFrom('ping', 'register', 'unregister', 'list', 'show', 'exec', 'resolve', 'status', 'request-key', '', 'x'.repeat(70), '__proto__');
const envelope = fc.record({
  v: fc.oneof(fc.constant(1), fc.integer(), fc.string(), fc.constant(null)),
  id: fc.oneof(fc.nat(), fc.string({ maxLength: 80 }), fc.double(), fc.constant(null)),
  op: fc.oneof(ops, fc.string()),
  params: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.record({ id: fc.string(), mountpoint: fc.string(), mount: fc.oneof(fc.string(), fc.integer()), argv: fc.array(fc.string(), { maxLength: 3 }), description: fc.string() }, { requiredKeys: [] })),
  extra: fc.jsonValue({ maxDepth: 1 }),
}, { requiredKeys: [] });

/** One frame body: a mutated envelope, arbitrary JSON, or arbitrary bytes. */
const body = fc.oneof(
  { weight: 6, arbitrary: envelope.map((e) => Buffer.from(JSON.stringify(e))) },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((j) => Buffer.from(JSON.stringify(j) ?? 'null')) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)) },
);

function frame(b: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(b.length);
  return Buffer.concat([h, b]);
}

/** Send frames on one connection and count the answers; resolves when all are answered or it closed. */
function blast(frames: Buffer[], untilClose = false): Promise<{ answered: number; closed: boolean; errors: number }> {
  return new Promise((resolve) => {
    const sock: Socket = connect(broker.adminSocket);
    const d = new FrameDecoder(1 << 24);
    let answered = 0;
    let errors = 0;
    const finish = (closed: boolean) => {
      sock.destroy();
      resolve({ answered, closed, errors });
    };
    sock.on('data', (chunk) => {
      for (const f of d.push(chunk)) {
        answered++;
        if ((JSON.parse(f.toString()) as { ok: boolean }).ok === false) errors++;
      }
      if (answered === frames.length && !untilClose) finish(false);
    });
    sock.on('close', () => finish(true));
    sock.on('error', () => undefined);
    sock.on('connect', () => sock.write(Buffer.concat(frames)));
  });
}

test(`protocol fuzzing: ${TOTAL} malformed, truncated, oversized and out-of-order messages; the broker keeps serving`, async () => {
  const client = await BrokerClient.connect(broker.adminSocket);
  let pings = 0;
  let pingFailures = 0;
  const pinger = setInterval(() => {
    client.ping().then(() => pings++, () => pingFailures++);
  }, 50);
  try {
    const bodies = fc.sample(body, { numRuns: TOTAL, seed: SEED });
    let sent = 0;
    let answered = 0;
    for (let i = 0; i < bodies.length; i += 2000) {
      const batch = bodies.slice(i, i + 2000).map(frame);
      const r = await blast(batch);
      sent += batch.length;
      answered += r.answered;
      assert.equal(r.closed, false, `batch ${i}: the broker closed a connection whose framing was intact`);
      assert.equal(r.answered, batch.length, `batch ${i}: every message gets exactly one answer`);
    }
    // Streams that cannot be resynchronised: an answer (E_PROTOCOL) then close, or silence for a half message.
    const oversized = await blast([Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3])], true);
    assert.equal(oversized.closed, true);
    assert.equal(oversized.errors, 1);
    for (const cut of [1, 3, 4, 10]) {
      const whole = encodeFrame({ v: 1, id: 1, op: 'ping' });
      const half = await Promise.race([blast([whole.subarray(0, cut)]), new Promise<{ answered: number }>((r) => setTimeout(() => r({ answered: 0 }), 200))]);
      assert.equal(half.answered, 0, 'no answer to half a message');
    }
    assert.equal(sent, TOTAL);
    assert.equal(answered, TOTAL);
    assert.ok(pings > 0, 'the well-formed client was served while the fuzzer ran');
    assert.equal(pingFailures, 0, 'and never refused');
    assert.ok(await client.ping());
  } finally {
    clearInterval(pinger);
    client.close();
  }
});
