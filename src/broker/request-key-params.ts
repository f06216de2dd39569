/**
 * The params of `request-key` (docs/request-key.md): the zod schema, which has
 * the last word and gives the error messages, and a plain check of the shape
 * the handler always sends, taken first: the schema costs tens of
 * microseconds per request on a cold cache, this check one or two. It accepts
 * only what the schema accepts (tests/unit/request-key-params.test.ts); anything
 * else goes to the schema.
 */
import { z } from 'zod';
import { parseParams } from '../server/protocol.js';

/** The request the upcall-request-key handler sends (docs/request-key.md). */
export const RequestKeyParams = z.object({
  keyId: z.number().int().positive().max(2 ** 31 - 1),
  op: z.string().min(1).max(32),
  type: z.string().min(1).max(64),
  description: z.string().max(4096),
  callout: z.string().max(60_000).optional(),
  calloutBase64: z.string().max(60_000).optional(),
  requesterPid: z.number().int().positive().max(2 ** 31 - 1),
  requesterStartTime: z.number().int().nonnegative().optional(),
  uid: z.number().int().min(-1).max(2 ** 32 - 1),
  gid: z.number().int().min(-1).max(2 ** 32 - 1),
  keyrings: z.object({
    thread: z.number().int(),
    process: z.number().int(),
    session: z.number().int(),
  }).strict().optional(),
  /** What is left of the handler's budget: the answer must come back within it. */
  timeoutMs: z.number().int().positive().max(600_000).optional(),
}).strict().refine((p) => !(p.callout !== undefined && p.calloutBase64 !== undefined), { message: 'give callout or calloutBase64, not both' });
export type RequestKeyParams = z.infer<typeof RequestKeyParams>;

const MAX_ID = 2 ** 31 - 1;
const KEYS = new Set(['keyId', 'op', 'type', 'description', 'callout', 'calloutBase64', 'requesterPid', 'requesterStartTime', 'uid', 'gid', 'keyrings', 'timeoutMs']);
const KEYRING_KEYS = ['thread', 'process', 'session'] as const;

const int = (v: unknown, min: number, max: number): boolean => Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;
const str = (v: unknown, min: number, max: number): boolean => typeof v === 'string' && v.length >= min && v.length <= max;
const opt = (v: unknown, ok: (v: unknown) => boolean): boolean => v === undefined || ok(v);
const plain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function keyringsOk(v: unknown): boolean {
  if (!plain(v)) return false;
  const keys = Object.keys(v);
  return keys.length === KEYRING_KEYS.length && KEYRING_KEYS.every((k) => Number.isSafeInteger(v[k]));
}

/** The schema's rules, checked by hand; null when any differs (then the schema decides). Exported for its test. */
export function checkedRequestKeyParams(v: unknown): RequestKeyParams | null {
  if (!plain(v) || !Object.keys(v).every((k) => KEYS.has(k))) return null;
  const ok = int(v.keyId, 1, MAX_ID) && str(v.op, 1, 32) && str(v.type, 1, 64) && str(v.description, 0, 4096)
    && opt(v.callout, (c) => str(c, 0, 60_000)) && opt(v.calloutBase64, (c) => str(c, 0, 60_000))
    && !(v.callout !== undefined && v.calloutBase64 !== undefined)
    && int(v.requesterPid, 1, MAX_ID) && opt(v.requesterStartTime, (t) => int(t, 0, Number.MAX_SAFE_INTEGER))
    && int(v.uid, -1, 2 ** 32 - 1) && int(v.gid, -1, 2 ** 32 - 1)
    && opt(v.keyrings, keyringsOk) && opt(v.timeoutMs, (t) => int(t, 1, 600_000));
  if (!ok) return null;
  const out = { ...v } as RequestKeyParams;
  if (v.keyrings !== undefined) out.keyrings = { ...(v.keyrings as NonNullable<RequestKeyParams['keyrings']>) };
  return out;
}

/** The params, checked; E_BAD_REQUEST (the schema's message) when they are not valid. */
export function parseRequestKeyParams(params: unknown): RequestKeyParams {
  return checkedRequestKeyParams(params) ?? parseParams(RequestKeyParams, params);
}
