import assert from 'node:assert/strict';
import type { RegistrationInfo } from '../../src/common/types.js';
import type { TestContainer } from '../testbed/index.js';
import { CLI } from './broker-process.js';

export interface CliOutcome<T> {
  code: number | null;
  json: T;
  stderr: string;
}

/** Run the upcall-broker CLI inside a container (as container root unless `asUid`), parsing its --json output. */
export async function cliIn<T = unknown>(c: TestContainer, args: string[], asUid?: number): Promise<CliOutcome<T>> {
  // --json right after the command name: anything after `--` belongs to the program
  const node = [process.execPath, CLI, args[0]!, '--json', ...args.slice(1)];
  const argv = asUid === undefined ? node
    : ['setpriv', `--reuid=${asUid}`, `--regid=${asUid}`, '--clear-groups', '--inh-caps=-all', ...node];
  const r = await c.exec(argv);
  let json: T;
  try {
    json = JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`cli ${args.join(' ')} printed no JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
  return { code: r.code, json, stderr: r.stderr };
}

/**
 * Mount a small tmpfs at `path` (under /mnt) inside the container's own mount
 * namespace. /mnt is first covered by a container-private tmpfs, so nothing is
 * ever created on the host's /mnt (container root cannot, and a container that
 * shares the host user namespace must not).
 */
export async function mountTmpfs(c: TestContainer, path: string): Promise<void> {
  if (!path.startsWith('/mnt/')) throw new Error('mountTmpfs: use a path under /mnt');
  const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  await c.check(['sh', '-c', `mountpoint -q /mnt || mount -t tmpfs -o size=1m ub-base /mnt; mkdir -p ${q(path)} && mount -t tmpfs -o size=1m ub-${c.name} ${q(path)}`]);
}

/** `register` of `path` from inside the container over a tenant socket, as its root; asserts it worked. */
export async function registerIn(c: TestContainer, tenantSocket: string, path: string): Promise<RegistrationInfo> {
  const r = await cliIn<RegistrationInfo>(c, ['register', '--socket', tenantSocket, '--mount', path]);
  assert.equal(r.code, 0, `register ${path} in ${c.name}: ${JSON.stringify(r.json)} ${r.stderr}`);
  return r.json;
}
