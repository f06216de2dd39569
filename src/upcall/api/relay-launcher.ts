import type { UpcallContext } from './upcall-context.js';
import type { RelayTransport } from '../dns/relay-transport.js';

export interface RunningRelay {
  transport: RelayTransport;
  /**
   * End the relay (and anything it started). SpawnerRelayLauncher resolves
   * once it is gone; ZygoteRelayLauncher at once, while the zygote ends it in
   * the background (EOF, then SIGKILL after 2 s): the upcall's answer does not
   * wait for the relay's exit.
   */
  stop(): Promise<void>;
  /** Kept between upcalls (RelayPool), it counts against no upcall budget while idle. */
  park(idle: boolean): void;
}

/** Starts the netrelay builtin as a child of a context's init. */
export const RelayLauncher = Symbol('RelayLauncher');
export interface RelayLauncher {
  start(context: UpcallContext): Promise<RunningRelay>;
}
