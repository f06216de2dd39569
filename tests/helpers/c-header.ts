/**
 * Reads the numeric `#define`s of a header in native-bindings/include/, for
 * the tests that check a TypeScript mirror against its C header (STYLE.md: no
 * constants copied by hand between languages without a check).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/common/paths.js';

/**
 * `#define PREFIX_NAME <value>` lines of native-bindings/include/<name>: name ->
 * value, a number for an integer literal, a string for a "string" (no escapes).
 */
export function headerDefines(name: string, prefix: string): Map<string, number | string> {
  const header = readFileSync(join(PACKAGE_ROOT, 'native-bindings', 'include', name), 'utf8');
  const out = new Map<string, number | string>();
  const re = new RegExp(`^#define\\s+(${prefix}\\w+)\\s+(-?0x[0-9a-fA-F]+|-?\\d+|"[^"\\\\]*")\\s*$`, 'gm');
  for (const m of header.matchAll(re)) out.set(m[1]!, m[2]!.startsWith('"') ? m[2]!.slice(1, -1) : Number(m[2]));
  return out;
}

/** Every define is in the mirror with the same value, and every mirror key is a define. */
export function assertMirror(header: string, defines: Map<string, number | string>, mirror: Readonly<Record<string, number | string>>): void {
  for (const [name, value] of defines) assert.equal(mirror[name], value, `${name}: ${header} says ${value}`);
  for (const name of Object.keys(mirror)) assert.ok(defines.has(name), `${name} is missing from ${header}`);
}
