import { readFileSync } from 'node:fs';
import { inject, injectable } from 'inversify';
import { BrokerError, errnoError, errnoName } from '../common/errors.js';
import { requestSignal } from '../common/request-signal.js';
import { BrokerConfig, Clock, LoggerFactory, type Logger, type RequestKeyConfig } from '../common/tokens.js';
import { Libc } from '../ns/libc.js';
import { Pidfd } from '../ns/pidfd.js';
import type { PeerIdentity } from '../server/peer-identity.js';
import type { OpContribution, RequestHandlers } from '../server/request-handlers.js';
import type { KeyProgramRunner } from '../upcall/api/key-program-runner.js';
import { liveTarget } from '../upcall/api/upcall-context.js';
import { DnsService } from '../upcall/dns/dns-service.js';
import { ZygoteProgramRunner } from '../upcall/request-key/program-runner.js';
import { expandArgs, mapIdInto, selectRule } from '../upcall/request-key/rules.js';
import { UpcallRunner } from '../upcall/api/upcall-runner.js';
import { Authorizer } from './authorizer.js';
import type { Context } from './context-table.js';
import { KeyRouter, type Routed } from './key-router.js';
import { parseRequestKeyParams, type RequestKeyParams } from './request-key-params.js';
import { readStat } from './mount-helper-routes.js';
import { UpcallDispatcher } from './upcall-dispatcher.js';
import type { UpcallRecord } from './upcall-record.js';

/** pidfd_open(2) flag for a thread (not a thread-group leader): O_EXCL, Linux 6.9. */
const PIDFD_THREAD = 0o200;
const EINVAL = 22;

const E = { EPERM: 1, ESRCH: 3, EAGAIN: 11, EINVAL: 22, ENODATA: 61, EMSGSIZE: 90, ETIMEDOUT: 110, ENOKEY: 126, EKEYREJECTED: 129 } as const;


/** What the handler does with the key. Every answer carries a reason, for its log. */
export type KeyDecision = (
  | { action: 'instantiate'; payloadBase64: string; expirySeconds: number | null; reason: string; context?: string; host?: boolean }
  | { action: 'reject'; errno: number; errnoName: string; timeoutSeconds: number; reason: string; context?: string; host?: boolean }
  | { action: 'negate'; timeoutSeconds: number; reason: string; context?: string; host?: boolean }
  | { action: 'decline'; reason: string; context?: string; host?: boolean }
) & { /** Which context answered and why (docs/walk-rule.md, "Which context answers a kernel upcall"). */ route?: string };

const DEFAULT_BUDGET_MS = 30_000;

const KEY_ERRNO_NAMES: Record<number, string> = { 90: 'EMSGSIZE', 126: 'ENOKEY', 127: 'EKEYEXPIRED', 128: 'EKEYREVOKED', 129: 'EKEYREJECTED' };
const keyErrnoName = (n: number): string => KEY_ERRNO_NAMES[n] ?? errnoName(n);

/**
 * `request-key` (admin socket, host root only): the kernel asked
 * /sbin/request-key for a key; the handler asks us what to do with it. The
 * walk rule is applied to the requesting process, and the key is built in its
 * container: dns_resolver keys by the DnsService, other types by the best
 * matching configured rule, whose program runs as a child of the container's init.
 */
@injectable()
export class RequestKeyOps implements OpContribution {
  private readonly log: Logger;
  private readonly programs: KeyProgramRunner;
  private readonly conf: RequestKeyConfig;

  constructor(
    @inject(Authorizer) private readonly auth: Authorizer,
    @inject(KeyRouter) private readonly router: KeyRouter,
    @inject(DnsService) private readonly dns: DnsService,
    @inject(Libc) private readonly libc: Libc,
    @inject(Clock) private readonly clock: Clock,
    @inject(BrokerConfig) config: BrokerConfig,
    @inject(LoggerFactory) loggers: LoggerFactory,
    @inject(UpcallDispatcher) private readonly dispatcher: UpcallDispatcher,
    @inject(UpcallRunner) runner: UpcallRunner,
  ) {
    this.log = loggers.get('broker:RequestKeyOps');
    this.conf = config.requestKey;
    this.programs = new ZygoteProgramRunner(runner);
  }

  registerOps(handlers: RequestHandlers): void {
    handlers.add('request-key', (p, peer) => this.requestKey(p, peer));
  }

  private async requestKey(params: unknown, peer: PeerIdentity): Promise<KeyDecision> {
    const p = parseRequestKeyParams(params);
    if (!this.auth.isHostRoot(peer)) {
      this.log.audit('refused', { op: 'request-key', peerPid: peer.cred.pid, peerUid: peer.cred.uid, listener: peer.listener, reason: 'not host root' });
      throw new BrokerError('E_PERMISSION', 'request-key is for the request-key handler (host root, admin socket) only');
    }
    const started = this.clock.monotonic();
    const budget = p.timeoutMs ?? DEFAULT_BUDGET_MS;
    // The budget's end also aborts the work (requestSignal): a lookup must not hold its slots past the handler.
    const abort = new AbortController();
    const work = requestSignal.run(abort.signal, () => this.decide(p, budget));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<KeyDecision>((resolve) => {
      timer = setTimeout(() => {
        resolve(this.reject(E.EAGAIN, this.conf.retryTimeoutSeconds, `no answer within the handler's budget of ${budget} ms`));
        abort.abort();
      }, budget);
    });
    const decision = await Promise.race([work, deadline]).finally(() => clearTimeout(timer));
    work.catch(() => undefined);
    const durationMs = Math.round((this.clock.monotonic() - started) * 1000) / 1000;
    // Metrics and the audit line (about 0.1 ms of formatting) once the answer is on its way: the kernel's
    // requester waits for the answer, not for our bookkeeping. Their lines are written a turn later anyway.
    setImmediate(() => this.record(p, decision, durationMs));
    return decision;
  }

  private record(p: RequestKeyParams, decision: KeyDecision, durationMs: number): void {
    try {
      this.dispatcher.record(this.upcallRecord(p, decision, durationMs));
    } catch (err) {
      this.log.error('request-key: recording the answer failed', { error: BrokerError.from(err).toJSON(), keyId: p.keyId });
    }
  }

  private upcallRecord(p: RequestKeyParams, decision: KeyDecision, durationMs: number): UpcallRecord {
    return {
      kind: 'request-key', outcome: decision.action === 'instantiate' ? 'ok' : decision.action, seconds: durationMs / 1000,
      ...(decision.action === 'instantiate' ? {} : { failure: { message: decision.reason, ...(decision.context ? { context: decision.context } : {}) } }),
      ...(decision.route !== undefined ? { route: decision.route } : {}),
      event: 'request-key',
      audit: {
        keyId: p.keyId, type: p.type, description: p.description, requesterPid: p.requesterPid, uid: p.uid,
        action: decision.action, ...('errno' in decision ? { errno: decision.errnoName } : {}),
        ...('timeoutSeconds' in decision ? { timeoutSeconds: decision.timeoutSeconds } : {}),
        ...('expirySeconds' in decision ? { expirySeconds: decision.expirySeconds } : {}),
        context: decision.context ?? null, host: decision.host ?? null, route: decision.route ?? null, reason: decision.reason, durationMs,
      },
    };
  }

  /** Never throws: every failure becomes the decision the kernel should see. */
  private async decide(p: RequestKeyParams, budgetMs: number): Promise<KeyDecision> {
    if (p.op !== 'create') return this.negate(`operation "${p.op}" is not handled (the kernel only asks to create)`);
    let requester: Pidfd;
    try {
      requester = this.openRequester(p.requesterPid);
    } catch (err) {
      return this.fromError(err, `requester ${p.requesterPid}`);
    }
    let routed: Routed;
    try {
      // One read of /proc/<pid>/stat for the start time and the router's flags; alive after it, so it was ours.
      const stat = readStat(requester.pid);
      if (stat === null || !requester.isAlive()) throw new BrokerError('E_NO_PROCESS', `requester ${p.requesterPid} exited`);
      // The handler read the requester's start time while the requester slept in
      // request_key(); if our pidfd names another process, the pid was reused.
      if (p.requesterStartTime !== undefined && p.requesterStartTime !== 0 && stat.startTime !== p.requesterStartTime) {
        return this.reject(E.ESRCH, this.conf.retryTimeoutSeconds, `requester ${p.requesterPid} exited (its pid now names another process)`);
      }
      routed = this.router.route(requester, p.type, p.description, stat);
    } catch (err) {
      return this.fromError(err, `requester ${p.requesterPid}`);
    } finally {
      requester.close();
    }
    try {
      const d = await this.answer(p, routed, budgetMs);
      return routed.route.capExpiry ? this.capped(d) : d;
    } finally {
      for (const h of routed.answerers) if (h.temporary) h.ctx.release();
    }
  }

  /** The answer of the routed context(s); several must agree (docs/walk-rule.md, cases 6 and 8). */
  private async answer(p: RequestKeyParams, routed: Routed, budgetMs: number): Promise<KeyDecision> {
    const name = routed.route.route;
    if (routed.answerers.length === 0) {
      return { ...this.negate(`no known context owns the requester's network namespace (route ${name})`), route: name };
    }
    const all = await Promise.all(routed.answerers.map(({ ctx }) => this.answerIn(ctx, p, budgetMs)));
    if (all.length === 1) return { ...all[0]!, route: name };
    const agreed = all.every((d) => d.action === 'instantiate' && d.payloadBase64 === (all[0] as { payloadBase64: string }).payloadBase64);
    const final = name.replace(/-several$/, agreed ? '-agreed' : '-ambiguous');
    const contexts = routed.answerers.map((h) => h.ctx.id).join(',');
    if (!agreed) return { ...this.reject(E.ENOKEY, this.conf.retryTimeoutSeconds, `contexts ${contexts} disagree on ${p.description}`), context: contexts, host: false, route: final };
    const expiries = all.map((d) => ('expirySeconds' in d ? d.expirySeconds : null)).filter((e): e is number => e !== null);
    return { ...all[0]!, expirySeconds: expiries.length > 0 ? Math.min(...expiries) : null, context: contexts, route: final } as KeyDecision;
  }

  /** One context's answer; a host context with hostRequests "decline" declines (the handler's fallback). */
  private async answerIn(ctx: Context, p: RequestKeyParams, budgetMs: number): Promise<KeyDecision> {
    const where = { context: ctx.id, host: ctx.namespaces?.host ?? false };
    try {
      if (where.host && this.conf.hostRequests === 'decline') {
        return { action: 'decline', reason: 'answered as on the host (hostRequests: decline)', ...where };
      }
      const callout = p.calloutBase64 !== undefined ? Buffer.from(p.calloutBase64, 'base64') : Buffer.from(p.callout ?? '', 'utf8');
      // Slots are held per context: every container's kernel upcalls come in as host root.
      const d = await this.dispatcher.run(ctx, () => p.type === 'dns_resolver'
        ? this.dnsKey(ctx, p.description, callout.toString('utf8'))
        : this.ruleKey(ctx, p, callout, budgetMs));
      return { ...d, ...where };
    } catch (err) {
      return { ...this.fromError(err, `context ${ctx.id}`), ...where };
    }
  }

  /** A kernel thread's key may land in the host's cache: no longer than kernelThreadMaxExpirySeconds. */
  private capped(d: KeyDecision): KeyDecision {
    const cap = this.conf.kernelThreadMaxExpirySeconds;
    if (d.action === 'instantiate') return { ...d, expirySeconds: Math.min(d.expirySeconds ?? cap, cap) };
    if (d.action === 'reject' || d.action === 'negate') return { ...d, timeoutSeconds: Math.min(d.timeoutSeconds, cap) };
    return d;
  }

  /** pidfd_open of the requesting task; rka->pid is a thread id, so a non-leader needs PIDFD_THREAD. */
  private openRequester(pid: number): Pidfd {
    let fd = this.libc.pidfdOpen(pid, 0);
    if (fd < 0 && this.libc.errno() === EINVAL) fd = this.libc.pidfdOpen(pid, PIDFD_THREAD);
    if (fd < 0) throw errnoError('pidfd_open', this.libc.errno(), `requester ${pid}`);
    return new Pidfd(fd, this.libc, pid);
  }

  /** dns_resolver: the container's own resolver; a DNS failure rejects the key as keyutils does. */
  private async dnsKey(ctx: Context, description: string, callout: string): Promise<KeyDecision> {
    const r = await this.dns.resolve(ctx, description, callout);
    if (r.dnserror !== null) {
      return this.reject(r.dnserror, r.expirySeconds, `${description}: ${r.status} (#dnserror=${r.dnserror})`);
    }
    return {
      action: 'instantiate', payloadBase64: r.payload.toString('base64'), expirySeconds: r.expirySeconds,
      reason: `${r.text ?? `${r.payload.length} bytes (binary server list)`} via ${r.sources[0]?.from ?? '?'}`,
    };
  }

  /** Other key types: the best matching rule's program, run inside the context; stdout is the payload. */
  private async ruleKey(ctx: Context, p: RequestKeyParams, callout: Buffer, budgetMs: number): Promise<KeyDecision> {
    const match = selectRule(this.conf.rules, { type: p.type, description: p.description, callout: callout.toString('utf8') });
    if (match === null) return this.negate(`no rule for key type "${p.type}" matches "${p.description}"`);
    const rule = match.rule;
    const { host, init } = liveTarget(ctx);
    const kr = p.keyrings ?? { thread: 0, process: 0, session: 0 };
    const argv = [rule.program, ...expandArgs(rule.args, {
      o: p.op, k: String(p.keyId), t: p.type, d: p.description, c: callout.toString('utf8'),
      u: String(host ? p.uid : mapIdInto(this.idMap(init, 'uid_map'), p.uid)),
      g: String(host ? p.gid : mapIdInto(this.idMap(init, 'gid_map'), p.gid)),
      T: String(kr.thread), P: String(kr.process), S: String(kr.session),
    })];
    const timeoutMs = Math.max(1, Math.min(rule.timeoutMs, budgetMs - 100));
    const r = await this.programs.run({ context: ctx, argv, stdin: rule.stdin === 'callout' ? callout : null, timeoutMs, outputCap: rule.maxPayloadBytes });
    const what = `rule ${match.index} (${rule.program})`;
    if (r.notRunnable === 'not-found') return this.negate(`${what}: the program does not exist in the container`);
    if (r.notRunnable === 'cannot-exec') return this.negate(`${what}: the program cannot be executed in the container`);
    if (r.timedOut) return this.reject(E.ETIMEDOUT, this.conf.retryTimeoutSeconds, `${what}: killed after ${timeoutMs} ms`);
    if (r.overflow) return this.reject(E.EMSGSIZE, this.conf.negativeTimeoutSeconds, `${what}: wrote more than ${rule.maxPayloadBytes} bytes`);
    if (r.code !== 0) {
      const err = r.stderr.toString('utf8').trim().split('\n').at(-1)?.slice(0, 200) ?? '';
      return this.negate(`${what}: ${r.signal ? `killed by ${r.signal}` : `exit status ${r.code}`}${err ? `: ${err}` : ''}`);
    }
    return { action: 'instantiate', payloadBase64: r.stdout.toString('base64'), expirySeconds: rule.expirySeconds, reason: `${what}: ${r.stdout.length} bytes` };
  }

  /** The context's uid_map/gid_map, read through its init's /proc entry (checked alive after the read). */
  private idMap(init: Pidfd, file: 'uid_map' | 'gid_map'): string {
    const text = readFileSync(`/proc/${init.pid}/${file}`, 'utf8');
    if (!init.isAlive()) throw new BrokerError('E_INIT_EXITED', `init ${init.pid} exited`);
    return text;
  }

  private reject(errno: number, timeoutSeconds: number, reason: string): KeyDecision {
    return { action: 'reject', errno, errnoName: keyErrnoName(errno), timeoutSeconds, reason };
  }

  private negate(reason: string): KeyDecision {
    return { action: 'negate', timeoutSeconds: this.conf.negativeTimeoutSeconds, reason };
  }

  /** A broker error as the kernel should see it (docs/request-key.md, "Failures"). */
  private fromError(err: unknown, what: string): KeyDecision {
    const e = BrokerError.from(err);
    const reason = `${what}: ${e.code}: ${e.message}`;
    if (e.code === 'E_INTERNAL') this.log.error('request-key failed', { error: e.toJSON(), stack: e.stack });
    switch (e.code) {
      case 'E_NS_NOT_OWNED': return this.reject(E.EPERM, this.conf.negativeTimeoutSeconds, reason);
      case 'E_NO_PROCESS':
      case 'E_INIT_EXITED': return this.reject(E.ESRCH, this.conf.retryTimeoutSeconds, reason);
      case 'E_UPCALL_TIMEOUT':
      case 'E_BUSY': return this.reject(E.EAGAIN, this.conf.retryTimeoutSeconds, reason);
      case 'E_BAD_REQUEST': return this.reject(E.EINVAL, this.conf.retryTimeoutSeconds, reason);
      case 'E_NOT_FOUND': return this.negate(reason);
      default: return this.reject(E.EKEYREJECTED, this.conf.retryTimeoutSeconds, reason);
    }
  }
}
