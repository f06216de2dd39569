/**
 * Upcalls that reach the zygote together (in one read of its stdin) are all
 * served. Runs as root, on the real zygote (build/Release/upcall-zygote).
 *
 * Host-context requests in a burst once failed with E_SPAWN "the spawner
 * exited without reporting" (issue 16, finding 12; the soak's unexplained
 * E_SPAWN): the zygote gave the first one's A a template slot, the rest of the
 * burst was queued to that slot, and A, which never becomes a template for the
 * host, closed its control socket and dropped them. Their one retry could be
 * queued to the next such slot and dropped again.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { defaultConfig } from '../../src/common/defaults.js';
import { decodeZygoteEvent, encodeZygoteFrame } from '../../src/upcall/zygote-protocol.js';
import { scaled } from '../testbed/time-scale.js';
import { until } from '../helpers/until.js';
import { initPidfd } from '../helpers/init-pidfd.js';

const ZYGOTE = join(defaultConfig().nativeDir, 'upcall-zygote');

function startTime(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

test('a burst of host-context upcalls in one read: every one runs (none dropped with a template that never was)', async () => {
  const z = spawn(ZYGOTE, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const events = new Map<number, Record<string, unknown>>();
  let buf = Buffer.alloc(0);
  z.stdout.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const ev = decodeZygoteEvent(buf.subarray(4, 4 + buf.readUInt32BE(0))) as unknown as Record<string, unknown>;
      buf = buf.subarray(4 + buf.readUInt32BE(0));
      if (ev['event'] === 'exit' || ev['event'] === 'error') events.set(Number(ev['id']), ev);
    }
  });
  const pidns = Number(/\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))![1]);
  const host = { initPidfd: initPidfd(1).fd, initPid: 1, initStartTime: startTime(1), pidns, host: true, mode: 'exec' as const, timeoutMs: scaled(20_000), outputCap: 100 };
  const ROUNDS = 4;
  const BURST = 16;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const ids = Array.from({ length: BURST }, (_, i) => round * BURST + i + 1);
      // One write: the zygote reads the whole burst at once and starts every request before any A has run.
      z.stdin.write(Buffer.concat(ids.map((id) => encodeZygoteFrame({ ...host, id, argv: ['echo', `n${id}`] }))));
      await until(`round ${round}: an answer to each of ${BURST} requests`, () => ids.every((id) => events.has(id)), scaled(30_000));
      const wrong = ids.map((id) => [id, events.get(id)!] as const)
        .filter(([id, ev]) => ev['event'] !== 'exit' || ev['code'] !== 0 || Buffer.from(String(ev['stdoutBase64']), 'base64').toString() !== `n${id}\n`)
        .map(([id, ev]) => `${id}: ${ev['event']} ${ev['code']} ${ev['message'] ?? ''}`);
      assert.deepEqual(wrong, [], `round ${round}: requests not run as asked`);
    }
  } finally {
    z.stdin.end();
    await new Promise((r) => (z.exitCode !== null || z.signalCode !== null ? r(null) : z.once('close', r)));
  }
  assert.equal(z.exitCode, 0, 'the zygote exits cleanly when its stdin closes');
});
