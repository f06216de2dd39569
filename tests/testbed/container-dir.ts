/**
 * The per-container directory on the host: /etc/hosts and /etc/resolv.conf
 * sources for the bind mounts, the DNS server's config and query log, and
 * the outputs of init's children.
 *
 * The container's mount namespace is a copy of the host's, so the directory
 * has the same path on both sides. Container root is an unprivileged host
 * uid, so the directory is chowned to it: it can then write its logs, and
 * it can read the files we (host root) put there.
 */
import { chmod, chown, mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_DNS_CONFIG } from './dns-types.js';
import type { DnsServerConfig } from './dns-types.js';
import { containerFiles } from './init-protocol.js';
import { scaled } from './time-scale.js';

export interface DirContent {
  readonly name: string;
  /** Extra /etc/hosts lines, appended to the localhost/hostname defaults. */
  readonly hosts: string;
  readonly resolvConf: string;
  readonly dns: DnsServerConfig;
}

/**
 * Default resolv.conf: our own server only, and fail fast rather than retry for 5s x 2
 * (1 s, scaled to the machine: the server is a Node process, slow to answer under TCG).
 */
export function defaultResolvConf(searchDomains: readonly string[]): string {
  const search = searchDomains.length > 0 ? `search ${searchDomains.join(' ')}\n` : '';
  return `nameserver 127.0.0.1\n${search}options timeout:${Math.ceil(scaled(1000) / 1000)} attempts:1\n`;
}

const DIR_PREFIX = 'upcall-testbed-';
/** Leftovers younger than this are spared: their owner may live in another pid namespace. */
const STALE_AFTER_MS = 60_000;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Removes directories left by test processes that were SIGKILLed (the only
 * thing such a death leaks: the kernel already took the namespaces). A
 * directory is stale when the pid in its name is dead and it is not fresh.
 */
export async function sweepStaleDirs(): Promise<void> {
  for (const entry of await readdir(tmpdir())) {
    if (!entry.startsWith(DIR_PREFIX)) continue;
    const path = join(tmpdir(), entry);
    if (isStale(entry, (await stat(path)).mtimeMs)) await removeDir(path);
  }
}

/** True when `name` is one of our dir (or cgroup) names and the pid in it is dead. */
function ownerIsDead(name: string): boolean {
  const pid = Number(new RegExp(`^${DIR_PREFIX}(\\d+)-`).exec(name)?.[1] ?? NaN);
  return Number.isInteger(pid) && pid !== process.pid && !pidAlive(pid);
}

/**
 * The staleness rule for anything named after a container directory (the
 * directory itself, its cgroups): its test process is dead and it is not fresh.
 */
export function isStale(name: string, mtimeMs: number): boolean {
  return ownerIsDead(name) && Date.now() - mtimeMs > STALE_AFTER_MS;
}

function hostsFile(name: string, extra: string): string {
  const base = `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${name}\n`;
  return extra ? `${base}${extra.endsWith('\n') ? extra : `${extra}\n`}` : base;
}

/**
 * Writes a file atomically (rename), so the DNS server, which re-reads its
 * config on every query, never sees a half-written file.
 */
async function writeReadable(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, text, { mode: 0o644 });
  await rename(tmp, path);
}

export async function writeDnsConfig(dir: string, config: DnsServerConfig): Promise<void> {
  await writeReadable(containerFiles(dir).dnsConfig, JSON.stringify(config, null, 2) + '\n');
}

/** Creates and fills the directory; the caller owns removing it (removeDir). */
export async function createDir(content: DirContent, owner: number | null): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `${DIR_PREFIX}${process.pid}-${content.name}-`));
  try {
    const files = containerFiles(dir);
    await mkdir(files.runDir);
    await writeReadable(files.hosts, hostsFile(content.name, content.hosts));
    await writeReadable(files.resolvConf, content.resolvConf);
    await writeDnsConfig(dir, { ...DEFAULT_DNS_CONFIG, ...content.dns });
    for (const path of [dir, files.runDir]) {
      await chmod(path, 0o755);
      if (owner !== null) await chown(path, owner, owner);
    }
    return dir;
  } catch (err) {
    await removeDir(dir);
    throw err;
  }
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}
