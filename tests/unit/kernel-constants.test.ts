import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { PACKAGE_ROOT } from '../../src/common/paths.js';
import { K } from '../../src/ns/kernel-constants.js';

// The C header and the TypeScript mirror must say the same thing (STYLE.md: no
// constants copied by hand between languages without a check).
test('native-bindings/ub-kernel.h and src/ns/kernel-constants.ts agree', () => {
  const header = readFileSync(join(PACKAGE_ROOT, 'native-bindings', 'ub-kernel.h'), 'utf8');
  const fromHeader = new Map<string, number>();
  for (const m of header.matchAll(/^#define\s+(UB_\w+)\s+(-?0x[0-9a-fA-F]+|-?\d+)\s*$/gm)) {
    fromHeader.set(m[1]!, Number(m[2]));
  }
  assert.ok(fromHeader.size >= 30, `parsed only ${fromHeader.size} constants from the header`);
  for (const [name, value] of fromHeader) {
    assert.equal((K as Record<string, number>)[name], value, `${name}: header says ${value}`);
  }
  for (const name of Object.keys(K)) assert.ok(fromHeader.has(name), `${name} is missing from ub-kernel.h`);
});
