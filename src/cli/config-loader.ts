import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { defaultConfig } from '../common/defaults.js';
import { BrokerError } from '../common/errors.js';
import type { BrokerConfig } from '../common/tokens.js';
import { KEY_TYPE_RE, patternError, templateError } from '../upcall/request-key/rules.js';

/** Patterns as request-key.conf's (one '*' at most, no whitespace). */
const KeyPattern = z.string().superRefine((v, ctx) => {
  const e = patternError(v);
  if (e) ctx.addIssue({ code: 'custom', message: e });
});

/** One generic key-type rule (docs/request-key.md, "Rules"). */
const RequestKeyRuleSchema = z.object({
  type: z.string().regex(KEY_TYPE_RE, 'a key type name')
    .refine((t) => t !== 'dns_resolver', 'dns_resolver keys are built in (DnsService); they take no rule')
    .refine((t) => !t.startsWith('.'), 'internal key types cannot be ruled'),
  description: KeyPattern.default('*'),
  callout: KeyPattern.default('*'),
  program: z.string().startsWith('/').max(4096),
  args: z.array(z.string().max(4096).superRefine((v, ctx) => {
    const e = templateError(v);
    if (e) ctx.addIssue({ code: 'custom', message: e });
  })).max(64).default([]),
  stdin: z.enum(['callout', 'none']).default('callout'),
  timeoutMs: z.number().int().min(100).max(600_000).default(5000),
  maxPayloadBytes: z.number().int().min(1).max(1024 * 1024).default(32767),
  expirySeconds: z.number().int().positive().max(2 ** 32 - 1).nullable().default(null),
}).strict();

const RequestKeySchema = z.object({
  hostRequests: z.enum(['serve', 'decline']).default('decline'),
  negativeTimeoutSeconds: z.number().int().min(0).max(86_400).default(60),
  retryTimeoutSeconds: z.number().int().min(0).max(86_400).default(1),
  kernelThreadMaxExpirySeconds: z.number().int().min(1).max(86_400).default(10),
  rules: z.array(RequestKeyRuleSchema).max(256).default([]),
}).strict();

const FileSchema = z.object({
  adminSocket: z.string().startsWith('/').optional(),
  tenantSocket: z.string().startsWith('/').nullable().optional(),
  stateDir: z.string().startsWith('/').optional(),
  logLevel: z.enum(['error', 'warn', 'info', 'debug']).optional(),
  logFormat: z.enum(['json', 'console']).optional(),
  limits: z.object({
    globalInFlight: z.number().int().positive(),
    tenantInFlight: z.number().int().positive(),
    tenantConnections: z.number().int().positive(),
    connectionInFlight: z.number().int().positive(),
    messagesPerSecond: z.number().positive(),
    messageBurst: z.number().int().positive(),
    maxMessageBytes: z.number().int().min(1024).max(16 * 1024 * 1024),
    globalConnections: z.number().int().positive(),
    contextUpcalls: z.number().int().positive(),
    replyBufferBytes: z.number().int().min(4096).max(256 * 1024 * 1024),
    idleTimeoutMs: z.number().int().min(100).max(86_400_000),
    containerRegistrations: z.number().int().positive(),
  }).partial().strict().optional(),
  requestKey: RequestKeySchema.optional(),
  // relayReuseMs + the 60 s bound on one DNS upcall stay under the relay's 65 s zygote timeout.
  dns: z.object({
    relayReuseMs: z.number().int().min(0).max(5000),
    relayIdleMs: z.number().int().min(1).max(5000),
    relaysIdlePerContext: z.number().int().min(1).max(64),
    relaysIdle: z.number().int().min(1).max(400),
  }).partial().strict().optional(),
  metricsListen: z.string().regex(/^(\/.+|(127\.\d+\.\d+\.\d+|\[::1\]|localhost):\d{1,5})$/, 'a loopback host:port or an absolute path').nullable().optional(),
}).strict();

/** The embedded default, overlaid with a JSON config file when one is given; a bad file names the field. */
export function loadConfig(path: string | undefined): BrokerConfig {
  const config = defaultConfig();
  if (path === undefined) return config;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new BrokerError('E_CONFIG', `${path}: ${(err as Error).message}`, { path });
  }
  const parsed = FileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.') || '(top level)';
    throw new BrokerError('E_CONFIG', `${path}: ${field}: ${issue?.message ?? 'invalid'}`, { path, field });
  }
  const file = Object.fromEntries(Object.entries(parsed.data).filter(([, v]) => v !== undefined));
  return { ...config, ...file };
}
