/**
 * Which context answers a kernel key request (docs/walk-rule.md, cases 6–10;
 * docs/request-key.md, "Routing"). Pure: the facts come in, a route comes out;
 * RequestKeyOps gathers the facts from the kernel and acts on the route.
 */

/** Names the audit line and the upcall_broker_key_routes_total metric use. */
export type RouteName =
  | 'mount-helper' | 'walk'
  | 'kthread-registration' | 'kthread-several' | 'kthread-host'
  | 'netns-host' | 'netns-foreign-mount' | 'netns-walk' | 'netns-context' | 'netns-several' | 'netns-decline';

/** Where the answer is made. `contexts` holds context ids, one or several (then they must agree). */
export type RouteTarget =
  | { kind: 'walk' }
  | { kind: 'host' }
  | { kind: 'contexts'; ids: string[] }
  | { kind: 'decline' };

export interface KeyRoute {
  route: RouteName;
  target: RouteTarget;
  /** A kernel thread's key may land in the host's cache: its expiry is capped. */
  capExpiry: boolean;
}

/** A live registration as routing sees it. */
export interface RouteRegistration {
  contextId: string;
  fstype: string | null;
  source: string | null;
}

/** A known (registered, live) context and its init's network namespace ("dev:ino"; null when unreadable). */
export interface RouteContext {
  id: string;
  netns: string | null;
}

/** The requester's walk: its context, and that context's network namespace. */
export interface RouteWalk {
  contextId: string;
  netns: string | null;
  host: boolean;
}

export interface RouteFacts {
  type: string;
  description: string;
  kernelThread: boolean;
  /** The context of a mount helper the broker runs that is the requester or one of its ancestors. */
  helperContext: string | null;
  /** "dev:ino" of the requester's network namespace; null when it cannot be read. */
  requesterNetns: string | null;
  hostNetns: string;
  /**
   * The requester's mount namespace shows an NFS mount made in another network namespace: an
   * NFS referral walked there is resolved, and its key cached, in that mount's network namespace,
   * not the requester's (docs/walk-rule.md, case 8). Absent: none.
   */
  foreignMount?: boolean;
  registrations: readonly RouteRegistration[];
  contexts: readonly RouteContext[];
}

/** Decide the route. `walk` is called only when the route depends on it (it may throw: the caller's error). */
export function decideRoute(f: RouteFacts, walk: () => RouteWalk): KeyRoute {
  if (f.helperContext !== null) return { route: 'mount-helper', target: { kind: 'contexts', ids: [f.helperContext] }, capExpiry: false };
  if (f.type !== 'dns_resolver') return { route: 'walk', target: { kind: 'walk' }, capExpiry: false };
  if (f.kernelThread) return kernelThreadRoute(f);
  if (f.requesterNetns === null || f.requesterNetns === f.hostNetns) return { route: 'netns-host', target: { kind: 'host' }, capExpiry: false };
  if (f.foreignMount === true) return { route: 'netns-foreign-mount', target: { kind: 'host' }, capExpiry: false };
  const w = walk();
  if (!w.host && w.netns === f.requesterNetns) return { route: 'netns-walk', target: { kind: 'walk' }, capExpiry: false };
  const ids = f.contexts.filter((c) => c.netns === f.requesterNetns).map((c) => c.id);
  if (ids.length === 0) return { route: 'netns-decline', target: { kind: 'decline' }, capExpiry: false };
  return { route: ids.length === 1 ? 'netns-context' : 'netns-several', target: { kind: 'contexts', ids }, capExpiry: false };
}

/** Kernel threads: the live registrations whose source names the requested host. */
function kernelThreadRoute(f: RouteFacts): KeyRoute {
  const host = requestedHost(f.description);
  const ids = [...new Set(f.registrations.filter((r) => sourceHosts(r.fstype, r.source).includes(host)).map((r) => r.contextId))];
  if (ids.length === 0) return { route: 'kthread-host', target: { kind: 'host' }, capExpiry: false };
  return { route: ids.length === 1 ? 'kthread-registration' : 'kthread-several', target: { kind: 'contexts', ids }, capExpiry: true };
}

/** The name a dns_resolver description asks for: without its query-type prefix, lower case, no final dot. */
export function requestedHost(description: string): string {
  const m = /^(?:a|aaaa|afsdb|srv|srv_tcp|srv_udp):(.*)$/i.exec(description);
  return normalHost(m ? m[1]! : description);
}

function normalHost(h: string): string {
  return h.trim().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '').toLowerCase();
}

/**
 * The server hosts a mount source names, by filesystem type (any shape when the
 * type is unknown): cifs `//host/share` or `\\host\share`; nfs `host:/path`,
 * `[v6]:/path`; ceph `mon1[:port],mon2[:port]:/path`; afs `%cell:volume` or
 * `#cell:volume`.
 */
export function sourceHosts(fstype: string | null, source: string | null): string[] {
  if (source === null || source === '') return [];
  const t = fstype?.toLowerCase() ?? '';
  if (/^(cifs|smb3|smbfs)$/.test(t) || (t === '' && /^(\/\/|\\\\)/.test(source))) return cifsHost(source);
  if (t === 'afs' || (t === '' && /^[%#]/.test(source))) return afsCell(source);
  if (t === 'ceph') return cephMons(source);
  if (/^nfs4?$/.test(t) || t === '') return nfsHost(source);
  return [];
}

function cifsHost(source: string): string[] {
  const m = /^(?:\/\/|\\\\)([^/\\]+)/.exec(source);
  return m ? [normalHost(m[1]!)] : [];
}

function afsCell(source: string): string[] {
  const m = /^[%#]([^:]+):/.exec(source);
  return m ? [normalHost(m[1]!)] : [];
}

function nfsHost(source: string): string[] {
  const m = /^(\[[^\]]+\]|[^:/[\]]+):\//.exec(source);
  return m ? [normalHost(m[1]!)] : [];
}

/** `mon1[:port],[v6]:port,mon3:/path` (the old device syntax; the new `name@fsid.fs=/` names no host). */
function cephMons(source: string): string[] {
  const at = source.lastIndexOf(':/');
  if (at < 0) return [];
  return source.slice(0, at).split(',').map((m) => {
    const v6 = /^\[([^\]]+)\]/.exec(m);
    return normalHost(v6 ? v6[1]! : m.replace(/:\d+$/, ''));
  }).filter((h) => h !== '');
}
