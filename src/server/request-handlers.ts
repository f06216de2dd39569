import type { PeerIdentity } from './peer-identity.js';

export type Handler = (params: unknown, peer: PeerIdentity) => Promise<unknown> | unknown;

/**
 * The table of operations the server dispatches on. Areas add their ops
 * (registration, upcalls) at composition time; the server knows none of them.
 */
export const RequestHandlers = Symbol('RequestHandlers');
export interface RequestHandlers {
  add(op: string, handler: Handler, options?: { tenant?: boolean }): void;
  get(op: string): { handler: Handler; tenant: boolean } | undefined;
  ops(): string[];
}

export class RequestHandlerTable implements RequestHandlers {
  private readonly table = new Map<string, { handler: Handler; tenant: boolean }>();

  add(op: string, handler: Handler, options: { tenant?: boolean } = {}): void {
    if (this.table.has(op)) throw new Error(`duplicate handler for op ${op}`);
    this.table.set(op, { handler, tenant: options.tenant ?? false });
  }

  get(op: string): { handler: Handler; tenant: boolean } | undefined {
    return this.table.get(op);
  }

  ops(): string[] {
    return [...this.table.keys()].sort();
  }
}
