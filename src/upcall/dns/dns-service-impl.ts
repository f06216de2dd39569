import { inject, injectable } from 'inversify';
import type { UpcallContext } from '../api/upcall-context.js';
import { BrokerError } from '../../common/errors.js';
import { requestSignal } from '../../common/request-signal.js';
import { Clock, LoggerFactory, type Logger, Timers } from '../../common/tokens.js';
import { resolveDnsKey } from './dns-key.js';
import type { DnsResolveResult, DnsService } from './dns-service.js';
import { type RelayLease, RelayPool } from './relay-pool.js';
import type { RelayTransport } from './relay-transport.js';
import { parseResolvConf } from './resolv-conf.js';
import { StubResolver } from './stub-resolver.js';

/** Whole-upcall bound: the worst resolv.conf (30 s x 5 attempts x 3 servers) must not hold a request forever. */
const MAX_UPCALL_MS = 60_000;

/**
 * DNS upcalls: a relay child inside the container (RelayPool: started for the
 * upcall, or kept from an earlier one of the same context); the files it reads
 * and the packets it relays are the container's; the logic is here.
 */
@injectable()
export class DnsServiceImpl implements DnsService {
  private readonly log: Logger;

  constructor(
    @inject(RelayPool) private readonly relays: RelayPool,
    @inject(Clock) private readonly clock: Clock,
    @inject(LoggerFactory) loggers: LoggerFactory,
    @inject(Timers) private readonly timers: Timers,
  ) {
    this.log = loggers.get('upcall:DnsService');
  }

  async resolve(context: UpcallContext, description: string, callout: string): Promise<DnsResolveResult> {
    const started = this.clock.monotonic();
    // The relay first: a kept one is asked for the files now (RelayPool.acquire), so the frame goes out
    // as soon as this turn ends, and what is left to do here happens while the relay reads them.
    const acquiring = this.relays.acquire(context);
    let cancelTimer: (() => void) | undefined;
    // The request's own budget (requestSignal) ends the lookup too: its relay is stopped, its slots freed.
    const signal = requestSignal.getStore();
    let onAbort: (() => void) | undefined;
    const deadline = new Promise<never>((_, reject) => {
      cancelTimer = this.timers.after(MAX_UPCALL_MS, () => reject(new BrokerError('E_UPCALL_TIMEOUT', `DNS upcall took over ${MAX_UPCALL_MS / 1000} s`)));
      onAbort = () => reject(new BrokerError('E_UPCALL_TIMEOUT', 'the request this DNS upcall was for has run out of time'));
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
    deadline.catch(() => undefined);
    const attempt = async (lease: RelayLease): Promise<DnsResolveResult> => {
      let ok = false;
      try {
        const result = await Promise.race([this.run(lease.transport, description, callout, started), deadline]);
        ok = true;
        return result;
      } finally {
        lease.release(ok);
      }
    };
    try {
      const lease = await Promise.race([acquiring, deadline]).catch((err: unknown) => {
        void acquiring.then((late) => late.release(false), () => undefined); // started after the deadline: stop it
        throw err;
      });
      try {
        return await attempt(lease);
      } catch (err) {
        // A kept relay that died while idle (killed inside the container, say) fails at once:
        // the upcall never reached it, so it gets a new one, once.
        if (!lease.reused || !(err instanceof BrokerError) || err.code !== 'E_SPAWN') throw err;
        this.log.debug('kept relay gone; starting a new one', { context: context.id, error: err.message });
        return await attempt(await this.relays.acquire(context, true));
      }
    } finally {
      cancelTimer?.();
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  private async run(t: RelayTransport, description: string, callout: string, started: number): Promise<DnsResolveResult> {
    const hostsFile = await t.readFile('/etc/hosts');
    const resolvFile = await t.readFile('/etc/resolv.conf');
    // glibc treats a missing resolv.conf as "no options"; anything else odd (a FIFO, a device, a
    // 100 MB file, no permission) is the container misbehaving: say so rather than guess.
    if (!resolvFile.ok && resolvFile.errno !== 'ENOENT') {
      throw new BrokerError('E_BAD_REQUEST', `the container's /etc/resolv.conf is unusable: ${resolvFile.errno}`, { file: '/etc/resolv.conf', errno: resolvFile.errno });
    }
    if (!hostsFile.ok && hostsFile.errno !== 'ENOENT') this.log.warn('container /etc/hosts unusable; ignoring it', { errno: hostsFile.errno });
    const conf = parseResolvConf(resolvFile.ok ? resolvFile.text : '');
    const result = await resolveDnsKey(description, callout, hostsFile.ok ? hostsFile.text : '', new StubResolver(conf, t));
    return { ...result, nameservers: conf.nameservers, search: conf.search, durationMs: this.clock.monotonic() - started };
  }
}
