import { inject, injectable } from 'inversify';
import type { Context } from '../../broker/context-table.js';
import { BrokerError } from '../../common/errors.js';
import { Clock, LoggerFactory, type Logger } from '../../common/tokens.js';
import { resolveDnsKey } from './dns-key.js';
import type { DnsResolveResult, DnsService } from './dns-service.js';
import { RelayLauncher } from './relay-launcher.js';
import { parseResolvConf } from './resolv-conf.js';
import { StubResolver } from './stub-resolver.js';

/** Whole-upcall bound: the worst resolv.conf (30 s x 5 attempts x 3 servers) must not hold a request forever. */
const MAX_UPCALL_MS = 60_000;

/**
 * DNS upcalls: one relay child inside the container per upcall; the files it
 * reads and the packets it relays are the container's; the logic is here.
 */
@injectable()
export class DnsServiceImpl implements DnsService {
  private readonly log: Logger;

  constructor(
    @inject(RelayLauncher) private readonly relays: RelayLauncher,
    @inject(Clock) private readonly clock: Clock,
    @inject(LoggerFactory) loggers: LoggerFactory,
  ) {
    this.log = loggers.get('upcall:DnsService');
  }

  async resolve(context: Context, description: string, callout: string): Promise<DnsResolveResult> {
    const started = this.clock.monotonic();
    const relay = await this.relays.start(context);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new BrokerError('E_UPCALL_TIMEOUT', `DNS upcall took over ${MAX_UPCALL_MS / 1000} s`)), MAX_UPCALL_MS);
    });
    try {
      return await Promise.race([this.run(relay.transport, description, callout, started), deadline]);
    } finally {
      clearTimeout(timer);
      await relay.stop();
    }
  }

  private async run(t: import('./relay-transport.js').RelayTransport, description: string, callout: string, started: number): Promise<DnsResolveResult> {
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
