import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';

/**
 * The package root, computed from this file's place in the build output
 * (dist/src/common/paths.js): no I/O, no guessing from the working directory.
 */
export const PACKAGE_ROOT = resolve(fileURLToPath(new URL('../../../', import.meta.url)));

/** node-gyp puts the native executables here at `npm ci`. */
export const DEFAULT_NATIVE_DIR = join(PACKAGE_ROOT, 'build', 'Release');

export const VERSION = '0.1.0';
export const PROTOCOL_VERSION = 1;
