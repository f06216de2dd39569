import { join } from 'node:path';
import { inject, injectable } from 'inversify';
import { z } from 'zod';
import { BrokerError } from '../common/errors.js';
import { BrokerConfig, Clock, LoggerFactory, ProcessSpawner, type Logger } from '../common/tokens.js';
import type { RegistrationInfo } from '../common/types.js';
import { Libc } from '../ns/libc.js';
import { resolveMountOf } from '../ns/mount-resolver.js';
import { Pidfd } from '../ns/pidfd.js';
import { startTimeOf } from '../ns/proc-info.js';
import type { PeerIdentity } from '../server/peer-identity.js';
import { parseParams } from '../server/protocol.js';
import type { OpContribution, RequestHandlers } from '../server/request-handlers.js';
import { Authorizer } from './authorizer.js';
import { type Context, ContextTable } from './context-table.js';
import { MountHelperRoutes } from './mount-helper-routes.js';
import { NamespaceWalker } from './namespace-walker.js';
import { Registry, toInfo } from './registry.js';

/** A word mount(8) cannot take for an option: no leading '-', no NUL. */
const word = (max: number) => z.string().min(1).max(max).refine((s) => !s.startsWith('-') && !s.includes('\0'), 'must not start with "-"');

const RegisterForParams = z.object({
  pid: z.number().int().positive().max(2 ** 22),
  mountpoint: z.string().min(1).max(4096).startsWith('/'),
  fstype: z.string().min(1).max(64).optional(),
  source: z.string().max(1024).optional(),
}).strict();

const MountForParams = z.object({
  pid: z.number().int().positive().max(2 ** 22),
  fstype: z.string().regex(/^[a-z0-9_.]{1,32}$/),
  options: word(4096).optional(),
  source: word(1024),
  mountpoint: z.string().min(1).max(4096).startsWith('/'),
  timeoutMs: z.number().int().min(100).max(600_000).optional(),
}).strict();
type MountForParams = z.infer<typeof MountForParams>;

const DEFAULT_MOUNT_TIMEOUT_MS = 60_000;
const MAX_HELPER_OUTPUT = 64 * 1024;

interface HelperResult {
  code: number | null;
  signal: string | null;
  stderr: string;
}

/**
 * Mounts made for a container by a privileged agent (docs/walk-rule.md, case 9):
 * `register-for` records a mount the agent made itself; `mount-for` runs
 * mount(8) in the target's mount and network namespaces (not its user
 * namespace) through upcall-mount-in, routes that helper's own kernel key
 * requests to the target's context while it runs, and registers the mount
 * only when it succeeded. Host root on the admin socket only.
 */
@injectable()
export class MountOps implements OpContribution {
  private readonly log: Logger;
  private seq = 0;

  constructor(
    @inject(Registry) private readonly registry: Registry,
    @inject(Authorizer) private readonly auth: Authorizer,
    @inject(NamespaceWalker) private readonly walker: NamespaceWalker,
    @inject(ContextTable) private readonly contexts: ContextTable,
    @inject(MountHelperRoutes) private readonly routes: MountHelperRoutes,
    @inject(ProcessSpawner) private readonly spawner: ProcessSpawner,
    @inject(Libc) private readonly libc: Libc,
    @inject(Clock) private readonly clock: Clock,
    @inject(BrokerConfig) private readonly config: BrokerConfig,
    @inject(LoggerFactory) loggers: LoggerFactory,
  ) {
    this.log = loggers.get('broker:MountOps');
  }

  registerOps(handlers: RequestHandlers): void {
    handlers.add('register-for', (p, peer) => this.registerFor(p, peer));
    handlers.add('mount-for', (p, peer) => this.mountFor(p, peer));
  }

  private async registerFor(params: unknown, peer: PeerIdentity): Promise<RegistrationInfo> {
    const p = parseParams(RegisterForParams, params);
    this.assertHostRoot(peer, 'register-for', p.pid);
    using target = Pidfd.open(this.libc, p.pid);
    // Watched for its unmount as every agent's registration is (MountWatcher, through Registry.onRegistered).
    const reg = await this.registry.register({ mounter: target, cred: peer.cred, mountpoint: p.mountpoint, fstype: p.fstype, source: p.source, agent: true });
    this.log.audit('registered-for', { id: reg.id, forPid: p.pid, agentPid: peer.cred.pid, mountpoint: p.mountpoint, context: reg.context.id });
    return toInfo(reg);
  }

  private async mountFor(params: unknown, peer: PeerIdentity): Promise<RegistrationInfo> {
    const p = parseParams(MountForParams, params);
    this.assertHostRoot(peer, 'mount-for', p.pid);
    const started = this.clock.monotonic();
    using target = Pidfd.open(this.libc, p.pid);
    const ctx = this.contexts.adopt(this.walker.hold(target));
    const pending = `mount-for-${++this.seq}`;
    ctx.refs.add(pending); // held while the helper runs, even if no registration ever refers to it
    const what = { forPid: p.pid, agentPid: peer.cred.pid, fstype: p.fstype, source: p.source, mountpoint: p.mountpoint, context: ctx.id };
    try {
      const argv = ['mount', '-t', p.fstype, ...(p.options !== undefined ? ['-o', p.options] : []), '--', p.source, p.mountpoint];
      const r = await this.runHelper(target, ctx, argv, p.timeoutMs ?? DEFAULT_MOUNT_TIMEOUT_MS);
      if (r.code !== 0) throw this.failed(p, r);
      const reg = await this.registerMounted(target, peer, p);
      this.log.audit('mounted-for', { ...what, id: reg.id, mountId: reg.mountId, durationMs: Math.round(this.clock.monotonic() - started) });
      return toInfo(reg);
    } catch (err) {
      const e = BrokerError.from(err);
      this.log.audit('mount-for failed', { ...what, code: e.code, message: e.message });
      throw e;
    } finally {
      this.contexts.unref(ctx, pending);
    }
  }

  /** The mount as the target sees it must be a new mount root; else nothing was mounted there (and nothing is registered). */
  private async registerMounted(target: Pidfd, peer: PeerIdentity, p: MountForParams) {
    const seen = resolveMountOf(this.libc, target, p.mountpoint);
    if (!seen.isMountRoot) throw new BrokerError('E_MOUNT_FAILED', `mount(8) succeeded but nothing is mounted at ${p.mountpoint} as process ${p.pid} sees it`);
    try {
      return await this.registry.register({ mounter: target, cred: peer.cred, mountpoint: p.mountpoint, fstype: p.fstype, source: p.source, agent: true });
    } catch (err) {
      // Registered nothing: take the mount away again, so nothing runs unrecorded.
      const undo = await this.runHelper(target, null, ['umount', '--', p.mountpoint], 10_000).catch(() => null);
      this.log.warn('mount made but not registered; unmounted it', { mountpoint: p.mountpoint, umountExit: undo?.code ?? null });
      throw err;
    }
  }

  /** upcall-mount-in with the target's pidfd as fd 3; its kernel key requests are routed to `ctx` while it runs. */
  private runHelper(target: Pidfd, ctx: Context | null, argv: string[], timeoutMs: number): Promise<HelperResult> {
    const helper = join(this.config.nativeDir, 'upcall-mount-in');
    const child = this.spawner.spawn(helper, ['--pidfd', '3', '--', ...argv], { stdio: ['ignore', 'ignore', 'pipe', target.fd] });
    const pid = child.pid;
    if (pid !== undefined && ctx !== null) {
      try {
        using self = Pidfd.open(this.libc, pid);
        this.routes.add(pid, startTimeOf(self), ctx.id);
      } catch {
        // exited already: it made no request
      }
    }
    return new Promise((resolve, reject) => {
      let stderr = '';
      child.stderr?.setEncoding('utf8').on('data', (d: string) => {
        if (stderr.length < MAX_HELPER_OUTPUT) stderr += d;
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('error', (err) => {
        clearTimeout(timer);
        if (pid !== undefined) this.routes.remove(pid);
        reject(new BrokerError('E_SPAWN', `cannot run ${helper}: ${err.message}`));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (pid !== undefined) this.routes.remove(pid);
        resolve({ code, signal, stderr });
      });
    });
  }

  private failed(p: MountForParams, r: HelperResult): BrokerError {
    const how = r.signal ? `killed by ${r.signal}` : `exit status ${r.code}`;
    const msg = r.stderr.trim().split('\n').slice(-3).join(' / ').slice(0, 1000);
    return new BrokerError('E_MOUNT_FAILED', `mount -t ${p.fstype} ${p.source} ${p.mountpoint} in process ${p.pid}'s namespaces: ${how}${msg ? `: ${msg}` : ''}`,
      { exitCode: r.code, signal: r.signal });
  }

  private assertHostRoot(peer: PeerIdentity, op: string, pid: number): void {
    if (this.auth.isHostRoot(peer)) return;
    this.log.audit('refused', { op, forPid: pid, peerPid: peer.cred.pid, peerUid: peer.cred.uid, listener: peer.listener, reason: 'not host root' });
    throw new BrokerError('E_PERMISSION', `${op} is for host root on the admin socket only`);
  }
}
