/** fanotify mount events as upcall-mount-watch's pipe delivers them (src/broker/mount-watch-events.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BrokerError } from '../../src/common/errors.js';
import { MountEventStream, parseMountEvents } from '../../src/broker/mount-watch-events.js';
import { MW } from '../../src/ns/mount-syscalls.js';

/** One event as the kernel writes it: metadata, then info records (type, 64-bit payload). */
function event(mask: number, infos: Array<{ type: number; id?: bigint; len?: number }> = []): Buffer {
  const records = infos.map(({ type, id = 0n, len = MW.INFO_MNT_LEN }) => {
    const r = Buffer.alloc(Math.max(len, 4));
    r.writeUInt8(type, 0);
    r.writeUInt16LE(len, 2);
    if (r.length >= 16) r.writeBigUInt64LE(id, 8);
    return r;
  });
  const meta = Buffer.alloc(MW.METADATA_LEN);
  const total = MW.METADATA_LEN + records.reduce((n, r) => n + r.length, 0);
  meta.writeUInt32LE(total, 0);
  meta.writeUInt8(MW.FANOTIFY_METADATA_VERSION, 4);
  meta.writeUInt16LE(MW.METADATA_LEN, 6);
  meta.writeBigUInt64LE(BigInt(mask), 8);
  meta.writeInt32LE(-1, 16); // FAN_NOFD
  meta.writeInt32LE(0, 20);
  return Buffer.concat([meta, ...records]);
}

const detach = (id: bigint) => event(MW.FAN_MNT_DETACH, [{ type: MW.FAN_EVENT_INFO_TYPE_MNT, id }]);
const isProtocol = (e: unknown) => e instanceof BrokerError && e.code === 'E_PROTOCOL';

test('a FAN_MNT_DETACH event carries the 64-bit unique mount id (40 bytes, as measured on 6.18)', () => {
  const buf = detach(2147484606n);
  assert.equal(buf.length, 40);
  assert.deepEqual(parseMountEvents(buf), { events: [{ mask: MW.FAN_MNT_DETACH, mountIds: [2147484606] }], used: 40 });
});

test('several events in one read; an overflow event has no record; records of other types are skipped', () => {
  const buf = Buffer.concat([
    detach(1n << 31n),
    event(MW.FAN_Q_OVERFLOW),
    event(MW.FAN_MNT_ATTACH, [{ type: 99, len: 12 }, { type: MW.FAN_EVENT_INFO_TYPE_MNT, id: 7n }]),
  ]);
  const { events, used } = parseMountEvents(buf);
  assert.equal(used, buf.length);
  assert.deepEqual(events, [
    { mask: MW.FAN_MNT_DETACH, mountIds: [2 ** 31] },
    { mask: MW.FAN_Q_OVERFLOW, mountIds: [] },
    { mask: MW.FAN_MNT_ATTACH, mountIds: [7] },
  ]);
});

test('a cut event is left for the next chunk; the stream gives each event once, however the pipe cuts it', () => {
  const whole = Buffer.concat([detach(11n), detach(12n), event(MW.FAN_Q_OVERFLOW), detach(13n)]);
  assert.deepEqual(parseMountEvents(whole.subarray(0, 50)), { events: [{ mask: MW.FAN_MNT_DETACH, mountIds: [11] }], used: 40 });
  assert.deepEqual(parseMountEvents(whole.subarray(0, 10)), { events: [], used: 0 });
  fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: whole.length - 1 }), { maxLength: 8 }), (cuts) => {
    const points = [0, ...[...new Set(cuts)].sort((a, b) => a - b), whole.length];
    const stream = new MountEventStream();
    const got = points.slice(1).flatMap((end, i) => stream.push(whole.subarray(points[i]!, end)));
    assert.deepEqual(got.map((e) => e.mountIds), [[11], [12], [], [13]]);
  }));
});

test('lengths that do not hold together are refused (E_PROTOCOL), never read past', () => {
  const wrongVersion = detach(1n);
  wrongVersion.writeUInt8(2, 4);
  const shortEvent = detach(1n);
  shortEvent.writeUInt32LE(8, 0);
  const hugeEvent = detach(1n);
  hugeEvent.writeUInt32LE(1 << 20, 0);
  const metaPastEnd = detach(1n);
  metaPastEnd.writeUInt16LE(64, 6);
  const recordPastEnd = detach(1n);
  recordPastEnd.writeUInt16LE(40, MW.METADATA_LEN + 2);
  const emptyRecord = detach(1n);
  emptyRecord.writeUInt16LE(0, MW.METADATA_LEN + 2);
  const shortMountRecord = event(MW.FAN_MNT_DETACH, [{ type: MW.FAN_EVENT_INFO_TYPE_MNT, len: 8 }]);
  for (const [what, buf] of Object.entries({ wrongVersion, shortEvent, hugeEvent, metaPastEnd, recordPastEnd, emptyRecord, shortMountRecord })) {
    assert.throws(() => parseMountEvents(buf), isProtocol, what);
  }
});

test('mnt_id_req for statmount: size 32 (VER1), the mount, the mask, the namespace id', async () => {
  const { mntIdReq } = await import('../../src/ns/mount-syscalls.js');
  const req = mntIdReq(Buffer.alloc(32, 0xff), 2147484606n, 1n, 139n);
  assert.equal(req.readUInt32LE(0), 32);
  assert.equal(req.readUInt32LE(4), 0, 'spare');
  assert.equal(req.readBigUInt64LE(8), 2147484606n);
  assert.equal(req.readBigUInt64LE(16), 1n);
  assert.equal(req.readBigUInt64LE(24), 139n);
});

test('statmount-ns probe: a kernel without NS_MNT_GET_INFO (ENOTTY) gets the mountinfo fallback', async () => {
  const { kernelProbes } = await import('../../src/ns/kernel-compat.js');
  let errno = 0;
  const libc = {
    ioctlPtr: () => { errno = 25; return -1; },
    statx: () => 0,
    errno: () => errno,
  } as unknown as import('../../src/ns/libc.js').Libc;
  assert.equal(kernelProbes(libc)['statmount-ns'](), false);
});
