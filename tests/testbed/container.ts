/**
 * TestContainer: one container made of real kernel namespaces (user, pid,
 * mount, net, uts, ipc, cgroup) with its own /etc/hosts, /etc/resolv.conf,
 * /proc and DNS server. Create through Testbed, which guarantees teardown.
 */
import { readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CgroupSet } from './cgroups.js';
import { DEFAULT_PROBE_ARGV, spawnIn, startChildUserns, startNestedPidns } from './child-handles.js';
import type { ChildHandle } from './child-handles.js';
import { createDir, defaultResolvConf, removeDir, writeDnsConfig } from './container-dir.js';
import { DEFAULT_DNS_CONFIG } from './dns-types.js';
import type { DnsQueryLogEntry, DnsQueryResult, DnsRecord, DnsServerConfig, DnsTransport, NameBehaviour } from './dns-types.js';
import { allocateIdBase } from './idmap.js';
import { InitClient } from './init-client.js';
import type { InitRunOptions } from './init-client.js';
import { containerFiles } from './init-protocol.js';
import { launch } from './launch.js';
import type { Launched } from './launch.js';
import { execIn } from './nsenter.js';
import type { ExecOptions, ExecResult } from './nsenter.js';
import { childrenOf, nsInodes, nsPids, waitFor } from './procfs.js';
import type { NsInodes } from './procfs.js';
import { teardown } from './teardown.js';
import { resolveUnusual, unusualExecPrefix } from './unusual.js';
import type { ResolvedUnusual, UnusualInit } from './unusual.js';
import { scaled } from './time-scale.js';

export interface ContainerSpec {
  /** Hostname and label in paths/errors; must be unique per Testbed. */
  readonly name?: string;
  /** Extra /etc/hosts lines, appended after localhost and the hostname line. */
  readonly hosts?: string;
  /** Replaces the default resolv.conf (nameserver 127.0.0.1, searchDomains, timeout:1). */
  readonly resolvConf?: string;
  readonly searchDomains?: readonly string[];
  readonly records?: readonly DnsRecord[];
  readonly dnsBehaviours?: readonly NameBehaviour[];
  /** DNS listen addresses (default 127.0.0.1; any 127/8 address works on lo). */
  readonly dnsListen?: readonly string[];
  /** CIDR addresses of the container's eth0 (default 192.0.2.2/24, a documentation range). */
  readonly addresses?: readonly string[];
  /** No user namespace: container root is host root (the other namespaces stay). */
  readonly shareHostUserns?: boolean;
  /** Per startup step (default 10 s). */
  readonly readyTimeoutMs?: number;
  /**
   * Run pid 1 with unusual settings (capabilities, no_new_privs, seccomp,
   * cgroups, rlimits, oom_score_adj, umask, nice, personality, session
   * keyring, chroot) that its real children inherit; `true` for the defaults.
   * See unusual.ts.
   */
  readonly unusual?: UnusualInit | true;
}

export interface DnsQueryOptions {
  readonly transport?: DnsTransport;
  readonly server?: string;
  readonly port?: number;
  readonly timeoutMs?: number;
}

const DEFAULT_ADDRESSES: readonly string[] = ['192.0.2.2/24'];
const DNS_QUERY_JS = fileURLToPath(new URL('./dns-query.js', import.meta.url));

export class TestContainer {
  readonly initPid: number;
  /** Namespace inodes of pid 1, read at creation. */
  readonly ns: NsInodes;
  private readonly pending: Promise<unknown>[] = [];
  private readonly init: InitClient;
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly name: string,
    readonly dir: string,
    /** Host uid/gid that container root maps to; null when sharing the host user ns. */
    readonly uidBase: number | null,
    private readonly launched: Launched,
    ns: NsInodes,
    /** The unusual-init settings in effect (defaults filled in), or null. */
    readonly unusual: ResolvedUnusual | null,
    /** The unusual init's cgroups (host side), or null. */
    readonly cgroups: CgroupSet | null,
  ) {
    this.initPid = launched.init.pid;
    this.ns = ns;
    this.init = new InitClient(launched.channel, this.initPid, dir, (p) => this.pending.push(p));
  }

  static async create(spec: ContainerSpec, name: string): Promise<TestContainer> {
    const uidBase = spec.shareHostUserns ? null : allocateIdBase();
    const dns: DnsServerConfig = {
      ...DEFAULT_DNS_CONFIG,
      records: spec.records ?? [],
      behaviours: spec.dnsBehaviours ?? [],
      listen: spec.dnsListen ?? DEFAULT_DNS_CONFIG.listen,
    };
    const resolvConf = spec.resolvConf ?? defaultResolvConf(spec.searchDomains ?? []);
    const dir = await createDir({ name, hosts: spec.hosts ?? '', resolvConf, dns }, uidBase);
    const unusual = spec.unusual ? resolveUnusual(spec.unusual, dir) : null;
    let cgroups: CgroupSet | null = null;
    let launched: Launched | undefined;
    try {
      // Named like the directory: unique, and swept by the same staleness rule.
      if (unusual?.cgroups) cgroups = await CgroupSet.create(basename(dir));
      const hold = cgroups ? cgroups.enter.bind(cgroups) : undefined;
      const execPrefix = unusual ? unusualExecPrefix(unusual, hold !== undefined) : [];
      const addresses = spec.addresses ?? DEFAULT_ADDRESSES;
      const timeoutMs = spec.readyTimeoutMs ?? scaled(10_000);
      launched = await launch({ name, dir, uidBase, addresses, timeoutMs, execPrefix, ...(hold && { hold }) });
      const ns = await nsInodes(launched.init.pid);
      return new TestContainer(name, dir, uidBase, launched, ns, unusual, cgroups);
    } catch (err) {
      if (launched) {
        launched.proc.kill('SIGKILL'); // takes pid 1 along (unshare --kill-child)
        await launched.exited;
      }
      await cgroups?.remove().catch(() => undefined); // retries while the killed tasks are released
      await removeDir(dir);
      throw err;
    }
  }

  /** Start time of pid 1 (clock ticks since boot, /proc/PID/stat field 22): with initPid, its identity. */
  get initStartTime(): string {
    return this.launched.init.startTime;
  }

  get stopped(): boolean {
    return this.stopping !== undefined;
  }

  private live(): number {
    if (this.stopping) throw new Error(`testbed: container "${this.name}" is stopped`);
    return this.initPid;
  }

  /** Runs argv in all the container's namespaces as container root and waits for it. */
  async exec(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    const done = execIn(this.live(), argv, opts);
    this.pending.push(done.catch(() => undefined));
    return done;
  }

  /** Like exec, but throws unless the exit code is 0; returns stdout. */
  async check(argv: readonly string[], opts?: ExecOptions): Promise<string> {
    const r = await this.exec(argv, opts);
    if (r.code !== 0) throw new Error(`testbed: ${argv.join(' ')} in "${this.name}" exited ${r.code ?? r.signal}: ${r.stderr}`);
    return r.stdout;
  }

  /** Starts argv inside; resolves with its host pid before it has run. */
  async spawn(argv: readonly string[], opts?: ExecOptions): Promise<ChildHandle> {
    return spawnIn(this.live(), argv, (p) => this.pending.push(p), opts);
  }

  /** Starts argv as a direct child of the container's pid 1. */
  async runAsInitChild(argv: readonly string[], opts?: InitRunOptions): Promise<ChildHandle> {
    this.live();
    return this.init.run(argv, opts);
  }

  /** argv as pid 1 of a pid namespace nested in this one, same user namespace. */
  async startNestedPidns(argv: readonly string[] = DEFAULT_PROBE_ARGV): Promise<ChildHandle> {
    return startNestedPidns(this.live(), argv, (p) => this.pending.push(p));
  }

  /** argv in a child user namespace (root mapped to container root), same pid namespace. */
  async startChildUserns(argv: readonly string[] = DEFAULT_PROBE_ARGV): Promise<ChildHandle> {
    return startChildUserns(this.live(), argv, (p) => this.pending.push(p));
  }

  /** Host pid of the container's DNS server. */
  dnsServerPid(): Promise<number> {
    return waitFor('DNS server among init children', async () => {
      for (const pid of await childrenOf(this.initPid)) {
        if ((await nsPids(pid))?.at(-1) === this.launched.dnsContainerPid) return pid;
      }
      return null;
    }, 1000);
  }

  /** Queries the container's DNS server from inside the container's network namespace. */
  async queryDns(name: string, type = 'A', opts: DnsQueryOptions = {}): Promise<DnsQueryResult> {
    const args = [name, type, `--transport=${opts.transport ?? 'udp'}`, `--server=${opts.server ?? '127.0.0.1'}`];
    args.push(`--port=${opts.port ?? 53}`, `--timeout=${opts.timeoutMs ?? scaled(2000)}`);
    return JSON.parse(await this.check([process.execPath, DNS_QUERY_JS, ...args])) as DnsQueryResult;
  }

  /** Every query the DNS server received so far, oldest first. */
  async dnsQueries(): Promise<DnsQueryLogEntry[]> {
    const text = await readFile(containerFiles(this.dir).dnsLog, 'utf8').catch(() => '');
    return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as DnsQueryLogEntry);
  }

  /** Changes records/behaviours of the running server (it re-reads its config per query). */
  async setDns(update: { records?: readonly DnsRecord[]; behaviours?: readonly NameBehaviour[] }): Promise<void> {
    const current = JSON.parse(await readFile(containerFiles(this.dir).dnsConfig, 'utf8')) as DnsServerConfig;
    await writeDnsConfig(this.dir, { ...current, ...update });
  }

  /** Kills everything in the container and verifies it is gone. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= teardown({
      name: this.name,
      dir: this.dir,
      launched: this.launched,
      ns: this.ns,
      ownUserns: this.uidBase !== null,
      pending: this.pending,
      cgroups: this.cgroups,
    });
    return this.stopping;
  }

  /**
   * Last resort from a process 'exit' handler, where only synchronous code
   * runs: kill pid 1 (if the pid still is ours) and remove the directory.
   */
  emergencyStopSync(): void {
    try {
      const stat = readFileSync(`/proc/${this.initPid}/stat`, 'utf8');
      const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
      if (startTime === this.launched.init.startTime) process.kill(this.initPid, 'SIGKILL');
    } catch {
      // Already gone.
    }
    rmSync(this.dir, { recursive: true, force: true });
    this.cgroups?.removeSync();
  }
}
