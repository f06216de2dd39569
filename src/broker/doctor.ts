import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject, injectable } from 'inversify';
import { BrokerError } from '../common/errors.js';
import { BrokerConfig } from '../common/tokens.js';
import { COMPAT_FEATURES, type CompatFeature, kernelCompat } from '../ns/kernel-compat.js';
import { NS_TYPES, PIDFD_GET_NS, type PidfdNsKind } from '../ns/kernel-constants.js';
import { Libc } from '../ns/libc.js';
import { resolveMountOf } from '../ns/mount-resolver.js';
import { peerCred, peerPidfd, socketFd } from '../ns/peer.js';
import { Pidfd } from '../ns/pidfd.js';
import { Spawner } from '../upcall/native-spawner.js';
import { handlerStatus, probeKernelPath } from '../upcall/request-key/kernel-probe.js';
import { probeUsernsRequestKey } from './doctor-userns-probe.js';
import { MOUNT_WATCH_METHODS, mountWatchMethod } from './mount-watcher.js';

export interface Feature {
  name: string;
  /** false only when missing; a degraded feature works through a fallback. */
  ok: boolean;
  status: 'ok' | 'degraded' | 'missing';
  detail: string;
  /** What the broker cannot do without it (missing), or what the fallback costs (degraded). */
  impact?: string;
}

/** A probe returns its detail (ok), or a Degraded (works through a fallback), or throws (missing). */
class Degraded {
  constructor(readonly detail: string, readonly cost: string) {}
}
/** Thrown by a native probe that finds only part of a feature (PIDFD_GET_INFO without PIDFD_INFO_EXIT). */
class DegradedError extends Error {
  constructor(message: string, readonly cost: string) {
    super(message);
  }
}
type Probe = { name: string; impact: string; run: () => Promise<string | Degraded> | string | Degraded };

/**
 * Each probe gets this long (a VM under TCG needs seconds for a spawn). A probe that
 * does not answer in time is reported missing and its processes are killed: doctor
 * never hangs (issue 14: on 6.1 it once blocked for more than 15 minutes).
 */
export const PROBE_TIMEOUT_MS = 30_000;

/**
 * `upcall-broker doctor`: probes, on the running kernel, each feature DESIGN.md
 * relies on, and says what is lost without it. Probes act for real (open a
 * pidfd, enter a fresh set of namespaces through the spawner), never read versions.
 */
@injectable()
export class Doctor {
  constructor(
    @inject(Libc) private readonly libc: Libc,
    @inject(Spawner) private readonly spawner: Spawner,
    @inject(BrokerConfig) private readonly config: BrokerConfig,
  ) {}

  /** Processes the probes started, killed at each probe's end, in time or not. */
  private readonly targets = new Set<() => void>();

  async run(timeoutMs = PROBE_TIMEOUT_MS): Promise<Feature[]> {
    const out: Feature[] = [];
    for (const p of this.probes()) {
      try {
        const r = await withTimeout(Promise.resolve().then(p.run), timeoutMs, p.name);
        out.push(r instanceof Degraded
          ? { name: p.name, ok: true, status: 'degraded', detail: r.detail, impact: r.cost }
          : { name: p.name, ok: true, status: 'ok', detail: r });
      } catch (err) {
        out.push({ name: p.name, ok: false, status: 'missing', detail: BrokerError.from(err).message, impact: p.impact });
      } finally {
        for (const stop of this.targets) stop();
        this.targets.clear();
      }
    }
    return out;
  }

  /** A kernel feature with a fallback: the native probe where the kernel has it, else the fallback's. */
  private compat(f: CompatFeature, native: () => string | Promise<string>, fallback: () => string | Promise<string>): () => Promise<string | Degraded> {
    return async () => {
      const compat = kernelCompat(this.libc);
      if (compat.has(f)) {
        try {
          return await native();
        } catch (err) {
          if (err instanceof DegradedError) return new Degraded(err.message, err.cost);
          throw err;
        }
      }
      const info = COMPAT_FEATURES[f];
      const detail = await fallback();
      return new Degraded(`${compat.state(f)}: ${info.what}; instead ${info.fallback} (${detail})`, info.cost);
    };
  }

  private probes(): Probe[] {
    const self = () => Pidfd.open(this.libc, process.pid);
    return [
      { name: 'root', impact: 'the broker must run as root to enter other namespaces', run: () => {
        if (process.geteuid?.() !== 0) throw new Error(`running as uid ${process.geteuid?.()}`);
        return 'running as root';
      } },
      { name: 'user_namespaces', impact: 'no containers with user namespaces can exist', run: () => {
        const max = Number(readFileSync('/proc/sys/user/max_user_namespaces', 'utf8'));
        if (!(max > 0)) throw new Error('user.max_user_namespaces is 0');
        return `user.max_user_namespaces=${max}`;
      } },
      { name: 'pidfd_open', impact: 'no race-free process references: the broker cannot work', run: () => {
        using p = self();
        return `pidfd ${p.fd} for pid ${process.pid}`;
      } },
      { name: 'PIDFD_GET_NAMESPACE', impact: 'cannot read a peer\'s namespaces from its pidfd (Linux 6.11)', run: this.compat('pidfd-ns', () => {
        using p = self();
        for (const kind of Object.keys(PIDFD_GET_NS) as PidfdNsKind[]) p.namespace(kind).close();
        return `all ${Object.keys(PIDFD_GET_NS).length} PIDFD_GET_*_NAMESPACE ioctls work`;
      }, () => {
        using p = self();
        for (const kind of Object.keys(PIDFD_GET_NS) as PidfdNsKind[]) p.namespace(kind).close();
        return `all ${Object.keys(PIDFD_GET_NS).length} /proc/self/ns files open`;
      }) },
      { name: 'NS_GET_USERNS', impact: 'cannot find the owner of a pid namespace: the walk rule cannot run', run: () => this.nsIoctl('owner') },
      { name: 'NS_GET_NSTYPE', impact: 'cannot check namespace fd types', run: () => this.nsIoctl('type') },
      { name: 'NS_GET_OWNER_UID', impact: 'cannot report who created a user namespace', run: () => this.nsIoctl('ownerUid') },
      { name: 'PIDFD_GET_INFO', impact: 'cannot read the exit status of a re-parented upcall child (Linux 6.13/6.15)', run: this.compat('pidfd-info', async () => {
        using p = self();
        const info = p.info();
        return `pid ${info.pid}, ppid ${info.ppid}, euid ${info.euid}; ${await this.exitStatusProbe()}`;
      }, () => {
        using p = self();
        const info = p.info();
        return `fdinfo names pid ${info.pid}`;
      }) },
      { name: 'SO_PEERCRED+SO_PEERPIDFD', impact: 'cannot identify socket peers (Linux 6.5): registration is impossible',
        run: this.compat('peerpidfd', () => this.peerProbe(), () => this.peerProbe()) },
      { name: 'STATX_MNT_ID_UNIQUE', impact: 'cannot name a registration\'s mount', run: this.compat('mnt-id-unique', () => {
        using p = self();
        const m = resolveMountOf(this.libc, p, '/');
        if (m.mountIdKind !== 'unique') throw new Error('statx did not report a unique mount id');
        return `mount id of / is ${m.mountId} (unique)`;
      }, () => {
        using p = self();
        return `mount id of / is ${resolveMountOf(this.libc, p, '/').mountId} (legacy)`;
      }) },
      { name: 'unmount detection', impact: 'registrations never turn unmounted', run: () => this.mountWatchProbe() },
      { name: 'spawner', impact: 'no namespace entry: run `npm ci` (node-gyp builds build/Release/upcall-spawner)', run: () => {
        const path = join(this.config.nativeDir, 'upcall-spawner');
        accessSync(path, constants.X_OK);
        return path;
      } },
      { name: 'NS_GET_PARENT', impact: 'cannot walk up the pid namespace tree: the walk rule cannot run', run: () => this.withTarget((pid) => {
        using pidfd = Pidfd.open(this.libc, pid);
        using pidns = pidfd.namespace('pid');
        using parent = pidns.parent();
        if (parent === null) throw new Error('no parent found for a child pid namespace');
        return `parent of the probe's pid namespace is ${parent.identity().ino}`;
      }) },
      { name: 'NS_GET_PID_FROM_PIDNS', impact: 'cannot find a container init\'s pid (Linux 6.11)', run: this.compat('pidns-pid',
        () => this.initProbe(), () => this.initProbe()) },
      { name: 'setns(pidfd, all 8 namespaces)', impact: 'upcalls cannot enter containers', run: () => this.withTarget(async (pid) => {
        using pidfd = Pidfd.open(this.libc, pid);
        const r = await this.spawner.run({ target: pidfd, argv: ['/bin/true'] });
        if (r.code !== 0) throw new Error(`spawner exited ${r.code}: ${r.stderr.toString().trim()}`);
        return `entered ${NS_TYPES.length} new namespaces of pid ${pid} through the spawner and ran /bin/true`;
      }) },
      ...['/sbin/request-key', '/bin/keyctl', '/sbin/key.dns_resolver'].map((path) => ({
        name: `keyutils ${path}`, impact: 'the kernel request-key path is unavailable: apt-get install keyutils', run: () => {
          accessSync(path, constants.X_OK);
          return `${path} is executable`;
        },
      })),
      { name: 'request-key handler', impact: 'the kernel cannot hand key requests to the broker: run npm ci (builds build/Release/upcall-request-key)',
        run: () => handlerStatus(join(this.config.nativeDir, 'upcall-request-key')) },
      { name: 'request-key kernel path', impact: 'kernel key requests (dns_resolver for CIFS/NFS/AFS/Ceph) do not reach the handler',
        run: () => probeKernelPath({ handler: join(this.config.nativeDir, 'upcall-request-key'), socket: this.config.adminSocket }) },
      { name: 'request-key upcalls from user namespaces',
        impact: 'the kernel refuses key construction for callers in a user namespace (ENOENT, /sbin/request-key never runs): '
          + 'containers with their own user namespace get no kernel request-key or dns_resolver upcall at all, through the broker or not',
        run: () => probeUsernsRequestKey({ timeoutMs: Math.min(PROBE_TIMEOUT_MS, 20_000), track: (stop) => this.targets.add(stop) }) },
    ];
  }

  /** Which MountWatcher method this kernel gets (docs/walk-rule.md, case 9); the compat probes ran the syscalls for real. */
  private mountWatchProbe(): string | Degraded {
    const compat = kernelCompat(this.libc);
    const method = mountWatchMethod(this.libc);
    const line = `method ${method}: ${MOUNT_WATCH_METHODS[method]}`;
    if (method === 'fanotify') return line;
    const lacking: CompatFeature = method === 'statmount' ? 'fanotify-mnt' : compat.has('mnt-id-unique') ? 'statmount-ns' : 'mnt-id-unique';
    return new Degraded(`${compat.state(lacking)}: ${COMPAT_FEATURES[lacking].what}; instead ${line}`,
      method === 'statmount' ? COMPAT_FEATURES['fanotify-mnt'].cost : COMPAT_FEATURES['statmount-ns'].cost);
  }

  /** PIDFD_INFO_EXIT (6.15): the exit status of a reaped process through a pidfd. 6.13 and 6.14 answer ESRCH. */
  private async exitStatusProbe(): Promise<string> {
    const child = spawn('/bin/sh', ['-c', 'exit 7'], { stdio: 'ignore' });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    using p = Pidfd.open(this.libc, child.pid!); // a zombie until Node reaps it: still openable
    await exited;
    let code: number | null = null;
    try {
      code = p.info().exitCode;
    } catch {
      // ESRCH: the kernel forgets a reaped process's status
    }
    if (code !== 7 << 8) {
      const info = COMPAT_FEATURES['pidfd-info'];
      throw new DegradedError('PIDFD_INFO_EXIT (Linux 6.15) missing: exit statuses from the proc connector, else from /proc while the upcall is a zombie', info.cost);
    }
    return 'PIDFD_INFO_EXIT gives a reaped child\'s status';
  }

  private initProbe(): Promise<string> {
    return this.withTarget((pid) => {
      using pidfd = Pidfd.open(this.libc, pid);
      using pidns = pidfd.namespace('pid');
      const init = pidns.pidFromPidns(1, [pid]);
      if (init !== pid) throw new Error(`pid 1 of the probe namespace maps to ${init}, expected ${pid}`);
      return `pid 1 of the probe's pid namespace is pid ${init} here`;
    });
  }

  private nsIoctl(which: 'owner' | 'type' | 'ownerUid'): string {
    using p = Pidfd.open(this.libc, process.pid);
    using userns = p.namespace('user');
    using pidns = p.namespace('pid');
    if (which === 'type') return `pid namespace fd reports type ${pidns.type()}`;
    if (which === 'ownerUid') return `own user namespace created by uid ${userns.ownerUid()}`;
    using owner = pidns.owner();
    return `pid namespace owned by user namespace ${owner.identity().ino}`;
  }

  private async peerProbe(): Promise<string> {
    const dir = mkdtempSync(join(tmpdir(), 'ub-doctor-'));
    const path = join(dir, 'probe.sock');
    const server = createServer();
    let client: Socket | undefined;
    let sock: Socket | undefined;
    try {
      const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
      await new Promise<void>((resolve) => server.listen(path, resolve));
      client = connect(path);
      sock = await accepted;
      const fd = socketFd(sock);
      const cred = peerCred(this.libc, fd);
      using pidfd = peerPidfd(this.libc, fd);
      if (cred.pid !== process.pid || pidfd.info().pid !== process.pid) throw new Error('peer is not this process');
      return `peer pid ${cred.pid} uid ${cred.uid}, pidfd ${pidfd.fd}`;
    } finally {
      // Both ends, whatever happened: on 6.1 SO_PEERPIDFD threw before they were closed,
      // and the open connection kept doctor's event loop alive forever (issue 14's hang).
      client?.destroy();
      sock?.destroy();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Run `fn` against a process in a fresh set of all eight namespaces, then kill it. */
  private async withTarget(fn: (pid: number) => Promise<string> | string): Promise<string> {
    const target = await startProbeTarget();
    this.targets.add(target.stop);
    try {
      return await fn(target.pid);
    } finally {
      target.stop();
    }
  }
}

/** `unshare` every namespace type and sleep; the sleeper's host pid is unshare's only child. */
async function startProbeTarget(): Promise<{ pid: number; stop: () => void }> {
  const child = spawn('unshare', ['--user', '--map-root-user', '--pid', '--mount', '--net', '--uts', '--ipc',
    '--cgroup', '--time', '--fork', '--kill-child', 'sleep', '30'], { stdio: 'ignore' });
  const stop = () => child.kill('SIGKILL');
  const exited = new Promise<never>((_, reject) => child.once('exit', (c) => reject(new Error(`unshare exited with ${c}`))));
  exited.catch(() => undefined);
  for (let i = 0; i < 200; i++) {
    const pid = readChild(child.pid);
    if (pid !== null) return { pid, stop };
    await Promise.race([new Promise((r) => setTimeout(r, 5)), exited]);
  }
  stop();
  throw new Error('unshare did not start its child');
}

function readChild(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return text === '' ? null : Number(text.split(' ')[0]);
  } catch {
    return null;
  }
}

/** `p`, or a rejection naming the probe once `ms` have passed. */
async function withTimeout<T>(p: Promise<T>, ms: number, name: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BrokerError('E_UPCALL_TIMEOUT', `${name}: no answer in ${ms} ms (probe abandoned, its processes killed)`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
