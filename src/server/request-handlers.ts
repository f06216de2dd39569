import { injectable, multiInject, optional } from 'inversify';
import type { PeerIdentity } from './peer-identity.js';

export type Handler = (params: unknown, peer: PeerIdentity) => Promise<unknown> | unknown;

/**
 * The table of operations the server dispatches on. Areas contribute their
 * ops (OpContribution); the server knows none of them.
 */
export const RequestHandlers = Symbol('RequestHandlers');
export interface RequestHandlers {
  add(op: string, handler: Handler, options?: { tenant?: boolean }): void;
  get(op: string): { handler: Handler; tenant: boolean } | undefined;
  ops(): string[];
}

/**
 * An area's ops, contributed as Theia's contribution points are: each op
 * class is bound to OpContribution in its area's module
 * (`bind(OpContribution).toService(ExecOps)`), and the handler table collects
 * every one of them (multi-injection) when it is built.
 */
export const OpContribution = Symbol('OpContribution');
export interface OpContribution {
  registerOps(handlers: RequestHandlers): void;
}

@injectable()
export class RequestHandlerTable implements RequestHandlers {
  private readonly table = new Map<string, { handler: Handler; tenant: boolean }>();

  constructor(@multiInject(OpContribution) @optional() contributions: readonly OpContribution[] = []) {
    for (const c of contributions) c.registerOps(this);
  }

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
