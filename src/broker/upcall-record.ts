import type { BrokerError } from '../common/errors.js';

export type UpcallKind = 'exec' | 'dns' | 'request-key';

/** What one finished upcall leaves behind: a metric and one audit line. */
export interface UpcallRecord {
  kind: UpcallKind;
  /** "ok", an error code or a key action; null: not counted (exec is audited only). */
  outcome: string | null;
  seconds: number;
  /** For status' recent failures (outcome other than "ok"). */
  failure?: { message: string; context?: string };
  /** request-key: the route that chose the context (upcall_broker_key_routes_total). */
  route?: string;
  /** The audit line: its event and fields. */
  event: string;
  audit: Record<string, unknown>;
}

/** How an op turns its upcall's result, or its (explained) error, into the record. */
export interface UpcallReport<T> {
  ok(result: T, ms: number): UpcallRecord;
  failed(error: BrokerError, ms: number): UpcallRecord;
}
