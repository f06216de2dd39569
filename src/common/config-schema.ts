/**
 * The broker's configuration, defined once (docs/operations.md): zod schemas
 * from which every config type is inferred. `BrokerConfigSchema` is the
 * effective configuration (what `config show` prints and the container binds
 * to the BrokerConfig token); `ConfigFileSchema` is what a JSON config file
 * may hold, overlaid on the embedded defaults (src/common/defaults.ts) by
 * src/cli/config-loader.ts. `limits` and `dns` are partial overrides: their
 * full views are limitsOf() and relayPoolOf() in defaults.ts.
 *
 * The order of the keys is the order zod reports a file's problems in: the
 * first one is the error `config check` names, so keep it.
 */
import { z } from 'zod';
import { KEY_TYPE_RE, patternError, templateError } from './key-patterns.js';

/** Limits on what peers may ask at once (docs/operations.md, "limits"); src/server/limits.ts enforces them. */
export const LimitsSchema = z.object({
  /** Requests being served at once, over all peers. */
  globalInFlight: z.number().int().positive(),
  /** Requests being served at once for one tenant (one container: its outermost pid namespace, src/server/tenant-key.ts). */
  tenantInFlight: z.number().int().positive(),
  /** Open connections per tenant. */
  tenantConnections: z.number().int().positive(),
  /** Requests in flight on one connection. */
  connectionInFlight: z.number().int().positive(),
  /** Sustained requests per second per connection (token bucket), and the burst above it. */
  messagesPerSecond: z.number().positive(),
  messageBurst: z.number().int().positive(),
  /** Largest request frame, bytes. */
  maxMessageBytes: z.number().int().min(1024).max(16 * 1024 * 1024),
  /** Open connections over all peers, exempt ones included (each holds a socket and a pidfd). */
  globalConnections: z.number().int().positive(),
  /**
   * Upcalls (exec, resolve, request-key) running at once for one context (P0),
   * whoever asked: kernel request-key upcalls all arrive from host root, so
   * only the context they run in tells one container's flood from another's.
   */
  contextUpcalls: z.number().int().positive(),
  /**
   * Reply bytes a connection may have queued for a peer that does not read:
   * past it the broker reads no more of that connection's requests (the
   * replies of those in flight still go out; idleTimeoutMs ends a peer that
   * reads none).
   */
  replyBufferBytes: z.number().int().min(4096).max(256 * 1024 * 1024),
  /**
   * A tenant connection with nothing in flight that sends nothing (or half a
   * frame) for this long, or that reads none of its replies for this long, is
   * closed. Host root on the admin socket is not timed out.
   */
  idleTimeoutMs: z.number().int().min(100).max(86_400_000),
  /** Registrations per container (its outermost pid namespace: nested contexts share it). */
  containerRegistrations: z.number().int().positive(),
}).strict();
export type Limits = z.infer<typeof LimitsSchema>;

/**
 * How DNS relays are kept between upcalls (config `dns`; src/upcall/dns/relay-pool.ts).
 * relayReuseMs + the 60 s bound on one DNS upcall stay under the relay's 65 s zygote timeout.
 */
export const RelayPoolSchema = z.object({
  /**
   * A relay serves further upcalls of its context for at most this long after
   * it was started (when the zygote checked its context against the init's);
   * 0: a new relay for every upcall.
   */
  relayReuseMs: z.number().int().min(0).max(5000),
  /** An idle relay ends after this long without an upcall. */
  relayIdleMs: z.number().int().min(1).max(5000),
  /** Idle relays kept per context... */
  relaysIdlePerContext: z.number().int().min(1).max(64),
  /** ...and in all (the least recently used one goes first). */
  relaysIdle: z.number().int().min(1).max(400),
}).strict();
export type RelayPoolConfig = z.infer<typeof RelayPoolSchema>;

/** Patterns as request-key.conf's (one '*' at most, no whitespace). */
const KeyPattern = z.string().superRefine((v, ctx) => {
  const e = patternError(v);
  if (e) ctx.addIssue({ code: 'custom', message: e });
});

/** One request-key.conf-style line for a generic key type, run inside the requester's container (docs/request-key.md, "Rules"). */
export const RequestKeyRuleSchema = z.object({
  /** Key type, exactly (e.g. "user", "cifs.spnego"). dns_resolver is built in and cannot be ruled. */
  type: z.string().regex(KEY_TYPE_RE, 'a key type name')
    .refine((t) => t !== 'dns_resolver', 'dns_resolver keys are built in (DnsService); they take no rule')
    .refine((t) => !t.startsWith('.'), 'internal key types cannot be ruled'),
  /** request-key pattern for the description: exact, or with one '*'. */
  description: KeyPattern.default('*'),
  /** request-key pattern for the callout info. */
  callout: KeyPattern.default('*'),
  /** Absolute path of the program, resolved inside the container's root. */
  program: z.string().startsWith('/').max(4096),
  /** Arguments after argv[0]; whole-argument macros %o %k %t %d %c %u %g %T %P %S, "%%" escapes a leading '%'. */
  args: z.array(z.string().max(4096).superRefine((v, ctx) => {
    const e = templateError(v);
    if (e) ctx.addIssue({ code: 'custom', message: e });
  })).max(64).default([]),
  /** What the program reads on stdin: the callout info (request-key's "|prog" mode) or nothing. */
  stdin: z.enum(['callout', 'none']).default('callout'),
  /** Kill the program after this long (bounded further by the handler's own budget). */
  timeoutMs: z.number().int().min(100).max(600_000).default(5000),
  /** Largest payload accepted from stdout; more rejects the key with EMSGSIZE. */
  maxPayloadBytes: z.number().int().min(1).max(1024 * 1024).default(32767),
  /** Expiry set on the instantiated key; null: none. */
  expirySeconds: z.number().int().positive().max(2 ** 32 - 1).nullable().default(null),
}).strict();
export type RequestKeyRule = z.infer<typeof RequestKeyRuleSchema>;

/**
 * How the `request-key` op answers the kernel's key construction requests.
 * dns_resolver keys are built in (DnsService); other key types need a rule.
 * Every field has its default here: an empty object parses to the embedded default.
 */
export const RequestKeySchema = z.object({
  /**
   * Requests whose walk ends in the broker's own pid namespace (host processes,
   * and containers sharing the host's user namespace): "decline" lets the
   * handler run its fallback (keyutils' own handler, unchanged host behaviour);
   * "serve" answers them in the broker's own namespaces, as keyutils would.
   */
  hostRequests: z.enum(['serve', 'decline']).default('decline'),
  /** Negative-key timeout when no rule matches or the program fails (the kernel's own default is 60). */
  negativeTimeoutSeconds: z.number().int().min(0).max(86_400).default(60),
  /** Timeout of keys rejected for a transient reason (upcall timed out, container init gone, spawn failed). */
  retryTimeoutSeconds: z.number().int().min(0).max(86_400).default(1),
  /**
   * Longest expiry (and negative timeout) of a key answered for a kernel thread
   * by the registrations: such a key may land in the host's cache.
   */
  kernelThreadMaxExpirySeconds: z.number().int().min(1).max(86_400).default(10),
  /** Rules for generic key types; for one key, the best match wins as in request-key.conf. */
  rules: z.array(RequestKeyRuleSchema).max(256).default([]),
}).strict();
export type RequestKeyConfig = z.infer<typeof RequestKeySchema>;

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;

/** The effective configuration. */
export const BrokerConfigSchema = z.object({
  adminSocket: z.string().startsWith('/'),
  tenantSocket: z.string().startsWith('/').nullable(),
  stateDir: z.string().startsWith('/'),
  /** One of LOG_LEVELS in a file; `serve --log-level` may name another winston level. */
  logLevel: z.string(),
  logFormat: z.enum(['json', 'console']),
  /** Overrides of the request limits (limitsOf() fills in the rest from DEFAULT_LIMITS). */
  limits: LimitsSchema.partial().strict().optional(),
  /** Kernel request-key upcalls through the upcall-request-key handler (docs/request-key.md). */
  requestKey: RequestKeySchema,
  /** Overrides of how DNS relays are kept between upcalls (relayPoolOf() fills in the rest from DEFAULT_RELAY_POOL). */
  dns: RelayPoolSchema.partial().strict().optional(),
  /** Prometheus endpoint: "127.0.0.1:PORT" or an absolute UNIX socket path; null: off. */
  metricsListen: z.string().regex(/^(\/.+|(127\.\d+\.\d+\.\d+|\[::1\]|localhost):\d{1,5})$/, 'a loopback host:port or an absolute path').nullable(),
  /** Where the native executables live (build/Release by default); not set from a file. */
  nativeDir: z.string().startsWith('/'),
}).strict();
export type BrokerConfig = z.infer<typeof BrokerConfigSchema>;

/** A config file: any of the effective fields but nativeDir, each optional; a file's log level is one of LOG_LEVELS. */
export const ConfigFileSchema = BrokerConfigSchema.omit({ nativeDir: true })
  .extend({ logLevel: z.enum(LOG_LEVELS) })
  .partial()
  .strict();
export type ConfigFile = z.infer<typeof ConfigFileSchema>;
