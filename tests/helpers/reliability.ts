/**
 * Shared pieces of the reliability-* and security-* integration tests and the
 * soak test: requests to a broker, the broker's processes and fds, waiting for
 * processes to die through pidfds, and the batch client run as any caller.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { BrokerClient } from '../../src/client/broker-client.js';
import { DEFAULT_LIMITS } from '../../src/common/defaults.js';
import { PACKAGE_ROOT } from '../../src/common/paths.js';
import { pollExited, Pidfd } from '../../src/ns/pidfd.js';
import type { BrokerProcess } from './broker-process.js';
import { realLibc } from './native.js';

export const BATCH_CLIENT = join(PACKAGE_ROOT, 'dist', 'tests', 'helpers', 'batch-client.js');
export const ZYGOTE_EXE = join(PACKAGE_ROOT, 'build', 'Release', 'upcall-zygote');
export const SPAWNER_EXE = join(PACKAGE_ROOT, 'build', 'Release', 'upcall-spawner');

/** One request on a fresh admin connection (host root). */
export async function admin<T = unknown>(broker: BrokerProcess, op: string, params: Record<string, unknown> = {}): Promise<T> {
  const client = await BrokerClient.connect(broker.adminSocket);
  try {
    return await client.request<T>(op, params);
  } finally {
    client.close();
  }
}

/** The error code of a request that must fail ("ok" when it succeeded). */
export async function adminCode(broker: BrokerProcess, op: string, params: Record<string, unknown> = {}): Promise<string> {
  try {
    await admin(broker, op, params);
    return 'ok';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

export function readOr(path: string, fallback = ''): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

/** A process's executable; a binary rebuilt while it runs still counts as itself (" (deleted)"). */
export function exeOf(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '');
  } catch {
    return null;
  }
}

/** Direct children of a process (every thread's), with their executables. */
export function childrenWithExe(pid: number): Array<{ pid: number; exe: string | null; cmd: string }> {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  const kids = tids.flatMap((t) => readOr(`/proc/${pid}/task/${t}/children`).split(' ').filter(Boolean).map(Number));
  return kids.map((k) => ({ pid: k, exe: exeOf(k), cmd: readOr(`/proc/${k}/cmdline`).split('\0').join(' ').trim() }));
}

/** The broker's upcall zygote (its child running upcall-zygote), once it has started one. */
export function zygoteOf(brokerPid: number): number | null {
  return childrenWithExe(brokerPid).find((c) => c.exe === ZYGOTE_EXE)?.pid ?? null;
}

export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

export function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readOr(`/proc/${pid}/status`));
  return m ? Number(m[1]) : 0;
}

/**
 * Pidfds for processes that must die: open them while the processes are
 * known alive, then await their exit (a pidfd polls readable at exit; that is
 * the event, a short timer only paces the non-blocking poll).
 */
export class ExitWatch {
  private readonly fds: Pidfd[] = [];

  constructor(pids: readonly number[]) {
    for (const pid of pids) {
      try {
        this.fds.push(Pidfd.open(realLibc(), pid));
      } catch {
        // already gone: nothing to wait for
      }
    }
  }

  get count(): number {
    return this.fds.length;
  }

  /** Pids still running. */
  alive(): number[] {
    const exited = pollExited(realLibc(), this.fds.map((f) => f.fd));
    return this.fds.filter((_, i) => !exited[i]).map((f) => f.pid);
  }

  /** Resolves when all have exited; rejects naming the survivors after `ms`. */
  async allExited(ms: number): Promise<void> {
    const end = Date.now() + ms;
    for (;;) {
      const left = this.alive();
      if (left.length === 0) return;
      if (Date.now() > end) throw new Error(`still running after ${ms} ms: ${left.map((p) => `${p} (${readOr(`/proc/${p}/cmdline`).split('\0').join(' ')})`).join(', ')}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  close(): void {
    for (const f of this.fds.splice(0)) f.close();
  }
}

/**
 * The pace of a victim's `series` on a broker with the shipped limits: under its connection's message rate,
 * so what refuses it can only be another tenant's load. Unpaced, a victim whose lookups take 1.3 ms sends 750
 * a second and its own rate limit answers E_BUSY once the burst is spent (CI, stop 21: 69 of 3044 in 4 s).
 */
export const VICTIM_PER_SECOND = DEFAULT_LIMITS.messagesPerSecond * 0.8;

/** argv that runs the batch client with `spec` against `socket` (prefix it with setpriv etc.). */
export function batchArgv(socket: string, spec: unknown): string[] {
  return [process.execPath, BATCH_CLIENT, socket, JSON.stringify(spec)];
}

/** Host pids of processes whose argv is exactly `argv`. */
export function pidsWithArgv(argv: readonly string[]): number[] {
  const want = `${argv.join('\0')}\0`;
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number)
    .filter((pid) => readOr(`/proc/${pid}/cmdline`) === want);
}
