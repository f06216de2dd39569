import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import v8 from 'node:v8';
import { limitMallocArenas, trimMalloc } from '../../src/platform/malloc-arenas.js';
import { capYoungGeneration, serialScavenges, serialScavengesWanted, youngGenerationCapBytes } from '../../src/service/young-generation.js';

test('youngGenerationCapBytes: 8 MiB by default, UPCALL_BROKER_YOUNG_GENERATION_MB in MiB, 0 for none, junk ignored', () => {
  assert.equal(youngGenerationCapBytes({}), 8 * 1024 * 1024);
  assert.equal(youngGenerationCapBytes({ UPCALL_BROKER_YOUNG_GENERATION_MB: '16' }), 16 * 1024 * 1024);
  assert.equal(youngGenerationCapBytes({ UPCALL_BROKER_YOUNG_GENERATION_MB: '0' }), null);
  assert.equal(youngGenerationCapBytes({ UPCALL_BROKER_YOUNG_GENERATION_MB: '-1' }), 8 * 1024 * 1024);
  assert.equal(youngGenerationCapBytes({ UPCALL_BROKER_YOUNG_GENERATION_MB: '8e9' }), 8 * 1024 * 1024);
});

/** Objects that survive a few scavenges (a ring of 60,000), made in turns of the event loop; then the young generation's size. */
const NEW_SPACE = `
const v8 = await import('node:v8');
const ring = new Array(60000);
for (let r = 0, n = 0; r < 60; r++) {
  for (let i = 0; i < 20000; i++, n++) ring[n % ring.length] = { a: n, b: 'x' + n };
  await new Promise((res) => setImmediate(res));
}
console.log(v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size);`;

test('capYoungGeneration: the young generation stops growing at the cap, and grows again once stopped', async () => {
  // V8's own growth, in a fresh process, as the reference: past the cap used below.
  const free = Number(spawnSync(process.execPath, ['--input-type=module', '-e', NEW_SPACE], { encoding: 'utf8' }).stdout);
  const cap = 4 * 1024 * 1024;
  assert.ok(free > cap, `V8 grows it past ${cap} on its own (${free})`);
  const capped = Number(spawnSync(process.execPath, ['--input-type=module', '-e', `
import { capYoungGeneration } from ${JSON.stringify(new URL('../../src/service/young-generation.js', import.meta.url).href)};
capYoungGeneration(${cap});
${NEW_SPACE}`], { encoding: 'utf8' }).stdout);
  // The observer runs between turns: collections within one turn may double it once more before it does.
  assert.ok(capped <= 2 * cap && capped < free, `capped near ${cap} (${capped}; ${free} uncapped)`);
  // In this process: stop() puts V8's growth factor back.
  const c = capYoungGeneration(1);
  c.stop();
  assert.ok(v8.getHeapSpaceStatistics().length > 0);
});

test('limitMallocArenas: does nothing under an operator\'s MALLOC_ARENA_MAX, calls mallopt otherwise (glibc)', () => {
  const saved = process.env.MALLOC_ARENA_MAX;
  try {
    process.env.MALLOC_ARENA_MAX = '2';
    assert.equal(limitMallocArenas(1), false);
    delete process.env.MALLOC_ARENA_MAX;
    assert.equal(limitMallocArenas(8), true, 'mallopt(M_ARENA_MAX) accepted');
  } finally {
    if (saved === undefined) delete process.env.MALLOC_ARENA_MAX;
    else process.env.MALLOC_ARENA_MAX = saved;
  }
});

test('trimMalloc: malloc_trim is found and runs (glibc)', () => {
  assert.equal(trimMalloc(), true);
  assert.equal(trimMalloc(), true, 'again, from the function it looked up once');
});

test('serialScavenges: set at run time, no scavenge has work on V8\'s helper threads; UPCALL_BROKER_PARALLEL_SCAVENGE=1 keeps them', () => {
  assert.equal(serialScavengesWanted({}), true);
  assert.equal(serialScavengesWanted({ UPCALL_BROKER_PARALLEL_SCAVENGE: '1' }), false);
  assert.equal(serialScavengesWanted({ UPCALL_BROKER_PARALLEL_SCAVENGE: '0' }), true);
  // --trace-gc-nvp prints, per scavenge, the time its helper threads spent (background.scavenge.parallel).
  const out = spawnSync(process.execPath, ['--trace-gc-nvp', '--input-type=module', '-e', `
import { serialScavenges } from ${JSON.stringify(new URL('../../src/service/young-generation.js', import.meta.url).href)};
serialScavenges();
${NEW_SPACE}`], { encoding: 'utf8' }).stdout;
  const background = [...out.matchAll(/gc=s .*?background\.scavenge\.parallel=([\d.]+)/g)].map((m) => Number(m[1]));
  assert.ok(background.length >= 10, `scavenges seen in the trace (${background.length})`);
  assert.deepEqual(background.filter((ms) => ms > 0), [], 'no scavenge used a helper thread');
});
