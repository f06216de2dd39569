import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { defaultConfig } from '../common/defaults.js';
import { BrokerError } from '../common/errors.js';
import type { BrokerConfig } from '../common/tokens.js';

const FileSchema = z.object({
  adminSocket: z.string().startsWith('/').optional(),
  tenantSocket: z.string().startsWith('/').nullable().optional(),
  stateDir: z.string().startsWith('/').optional(),
  logLevel: z.enum(['error', 'warn', 'info', 'debug']).optional(),
  logFormat: z.enum(['json', 'console']).optional(),
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
