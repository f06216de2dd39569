import { statSync } from 'node:fs';
import type { NamespaceFd, NsIdentity } from '../ns/namespace-fd.js';
import { sameNs } from '../ns/namespace-fd.js';

/** Pid namespaces nest at most 32 deep (kernel/pid_namespace.c MAX_PID_NS_LEVEL). */
const MAX_PID_NS_LEVEL = 32;

let ownPidns: NsIdentity | null = null;

/** The broker's own pid namespace (its identity never changes). */
export function brokerPidns(): NsIdentity {
  if (ownPidns === null) {
    const st = statSync('/proc/self/ns/pid');
    ownPidns = { dev: st.dev, ino: st.ino };
  }
  return ownPidns;
}

/**
 * The container a pid namespace belongs to, for fairness: the outermost pid
 * namespace below the broker's own on the way up from `pidns` (NS_GET_PARENT),
 * or the broker's own for a host process. Every pid namespace a container
 * creates inside itself (`unshare --pid`, a nested container with its own user
 * namespace) has that one above it, so nesting cannot multiply a limit; a child
 * user namespace keeps its pid namespace and so the same answer. `pidns` itself
 * is left open.
 */
export function containerPidns(pidns: NamespaceFd): NsIdentity {
  const own = brokerPidns();
  let id = pidns.identity();
  let cur: NamespaceFd | null = null; // an ancestor we opened (closed as we go up)
  try {
    for (let level = 0; level < MAX_PID_NS_LEVEL && !sameNs(id, own); level++) {
      const parent: NamespaceFd | null = (cur ?? pidns).parent();
      if (parent === null) break; // outside what the broker may see: the outermost visible one
      const parentId = parent.identity();
      if (sameNs(parentId, own)) {
        parent.close();
        break;
      }
      cur?.close();
      cur = parent;
      id = parentId;
    }
    return id;
  } finally {
    cur?.close();
  }
}

/** The key limits.ts counts a container under. */
export function containerKey(id: NsIdentity): string {
  return `pidns:${id.dev}:${id.ino}`;
}
