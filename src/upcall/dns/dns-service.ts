import type { UpcallContext } from '../api/upcall-context.js';
import type { DnsKeyResult } from './dns-key.js';

export interface DnsResolveResult extends DnsKeyResult {
  /** Where the answer came from, for humans: the resolver configuration the container had. */
  nameservers: string[];
  search: string[];
  durationMs: number;
}

/**
 * Resolve a dns_resolver key description the way the container of `context`
 * would: its /etc/hosts and /etc/resolv.conf read inside it, queries sent from
 * its network namespace by a child of its init. Throws BrokerError
 * (E_INIT_EXITED, E_SPAWN, E_UPCALL_TIMEOUT, E_BAD_REQUEST).
 */
export const DnsService = Symbol('DnsService');
export interface DnsService {
  resolve(context: UpcallContext, description: string, callout: string): Promise<DnsResolveResult>;
}
