import { z } from 'zod';
import { BrokerError, type BrokerErrorJson } from '../common/errors.js';
import { PROTOCOL_VERSION } from '../common/paths.js';

/** Request envelope: `{ v, id, op, params }` (docs/protocol.md). */
export const RequestSchema = z.object({
  v: z.literal(PROTOCOL_VERSION),
  id: z.union([z.number().int().nonnegative().max(2 ** 53), z.string().max(64)]),
  op: z.string().min(1).max(64),
  params: z.record(z.string(), z.unknown()).optional(),
}).strict();
export type Request = z.infer<typeof RequestSchema>;

export type RequestId = Request['id'] | null;

export type Response =
  | { v: typeof PROTOCOL_VERSION; id: RequestId; ok: true; result: unknown }
  | { v: typeof PROTOCOL_VERSION; id: RequestId; ok: false; error: BrokerErrorJson };

export function okResponse(id: RequestId, result: unknown): Response {
  return { v: PROTOCOL_VERSION, id, ok: true, result };
}

/** Longest error message sent, in characters: a message may quote what the caller sent. */
export const MAX_ERROR_MESSAGE = 256;
/** Longest error details sent, as JSON; longer details are dropped. */
export const MAX_ERROR_DETAILS = 1024;

/**
 * An error answer. Messages and details may quote the caller's own input (a
 * path, a field name): they are cut, so an error is never a way to make the
 * broker hold and send back kilobytes per request.
 */
export function errorResponse(id: RequestId, err: unknown): Response {
  const json = BrokerError.from(err).toJSON();
  if (json.message.length > MAX_ERROR_MESSAGE) json.message = `${json.message.slice(0, MAX_ERROR_MESSAGE - 1)}…`;
  if (json.details !== undefined && JSON.stringify(json.details).length > MAX_ERROR_DETAILS) json.details = { truncated: true };
  return { v: PROTOCOL_VERSION, id, ok: false, error: json };
}

/** Parse one frame body into a Request; what cannot be parsed is E_BAD_REQUEST with the id if we found one. */
export function parseRequest(body: Buffer): { id: RequestId; request?: Request; error?: BrokerError } {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return { id: null, error: new BrokerError('E_BAD_REQUEST', 'message is not valid JSON') };
  }
  const parsed = RequestSchema.safeParse(json);
  if (parsed.success) return { id: parsed.data.id, request: parsed.data };
  const rawId = (json as { id?: unknown } | null)?.id;
  const id = typeof rawId === 'number' || (typeof rawId === 'string' && rawId.length <= 64) ? rawId : null;
  const issue = parsed.error.issues[0];
  const where = issue && issue.path.length > 0 ? issue.path.join('.') : 'message';
  return { id, error: new BrokerError('E_BAD_REQUEST', `${where}: ${issue?.message ?? 'invalid'}`, { field: where }) };
}

/** Parse params of one op with its schema, as E_BAD_REQUEST naming the field. */
export function parseParams<T>(schema: z.ZodType<T>, params: unknown): T {
  const parsed = schema.safeParse(params ?? {});
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue && issue.path.length > 0 ? `params.${issue.path.join('.')}` : 'params';
  throw new BrokerError('E_BAD_REQUEST', `${where}: ${issue?.message ?? 'invalid'}`, { field: where });
}
