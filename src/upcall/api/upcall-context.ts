/**
 * What the upcall side (src/upcall/) sees of a context the broker holds: the
 * broker's Context (src/broker/context-table.ts) implements it, so nothing
 * under src/upcall/ imports src/broker/ (tests/unit/import-graph.test.ts).
 */
import { BrokerError } from '../../common/errors.js';
import type { RegistrationState } from '../../common/types.js';
import type { NsIdentity } from '../../ns/namespace-fd.js';
import type { Pidfd } from '../../ns/pidfd.js';
import type { UpcallTarget } from './upcall-runner.js';

export interface UpcallContext {
  readonly id: string;
  readonly state: RegistrationState;
  readonly initPid: number;
  readonly initStartTime: number;
  readonly pidnsId: NsIdentity;
  /** The held init pidfd while live; null once the init has exited. */
  readonly namespaces: { readonly host: boolean; readonly init: Pidfd } | null;
}

/**
 * The one "is it live, build the upcall target" step of every upcall (exec,
 * request-key programs, DNS relays). Throws E_INIT_EXITED once the init has
 * exited; `what` names the context in that message ("registration r-1").
 */
export function liveTarget(ctx: UpcallContext, what = `context ${ctx.id}`, details: Record<string, unknown> = {}): UpcallTarget {
  const held = ctx.namespaces;
  if (ctx.state !== 'live' || held === null) throw new BrokerError('E_INIT_EXITED', `the init of ${what} has exited`, details);
  // A host context (P0 is the broker's own pid namespace) runs in the broker's own namespaces and credentials.
  // Its init pidfd is the one held for the context (the one-shot spawner enters from it too).
  return { initPid: ctx.initPid, initStartTime: ctx.initStartTime, pidnsIno: ctx.pidnsId.ino, host: held.host, init: held.init };
}
