import type { UpcallContext } from './upcall-context.js';

/**
 * When a context stops being usable: its init exited, or the broker let it go
 * (its last registration removed). The broker's ContextTable is bound to it;
 * the upcall side (RelayPool) listens without importing the broker.
 */
export const ContextEvents = Symbol('ContextEvents');
export interface ContextEvents {
  onInitExit(listener: (ctx: UpcallContext) => void): void;
  onRelease(listener: (ctx: UpcallContext) => void): void;
}
