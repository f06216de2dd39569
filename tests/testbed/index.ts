/**
 * Test containers built from real kernel namespaces, for integration tests.
 *
 *   const bed = useTestbed(t);            // torn down after the test, pass or fail
 *   const c = await bed.create({ records: [{ name: 'svc.test', type: 'A', address: '10.0.0.7' }] });
 *   await c.exec(['getent', 'hosts', 'svc.test']);
 *
 * Must run as root on the host. See container.ts for the container API.
 */
export { Testbed, useTestbed } from './testbed.js';
export type { AfterHookHost } from './testbed.js';
export { TestContainer } from './container.js';
export type { ContainerSpec, DnsQueryOptions } from './container.js';
export type { ChildHandle } from './child-handles.js';
export type { InitRunOptions } from './init-client.js';
export { CHROOT_INIT_CWD, CHROOT_MARKER } from './unusual.js';
export type { ResolvedUnusual, RlimitName, SeccompSyscall, UnusualInit } from './unusual.js';
export type { CgroupSet } from './cgroups.js';
export type { ExecOptions, ExecResult } from './nsenter.js';
export { NS_KINDS, childrenOf, nsInodes, nsPids, procStat } from './procfs.js';
export type { NsInodes, NsKind, ProcIdentity, ProcStat } from './procfs.js';
export type {
  DnsAnswerView,
  DnsQueryLogEntry,
  DnsQueryResult,
  DnsRecord,
  DnsRecordType,
  DnsServerConfig,
  DnsTransport,
  NameBehaviour,
} from './dns-types.js';
