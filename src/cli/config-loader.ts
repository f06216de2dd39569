import { readFileSync } from 'node:fs';
import { type BrokerConfig, ConfigFileSchema } from '../common/config-schema.js';
import { defaultConfig } from '../common/defaults.js';
import { BrokerError } from '../common/errors.js';

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
  const parsed = ConfigFileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.') || '(top level)';
    throw new BrokerError('E_CONFIG', `${path}: ${field}: ${issue?.message ?? 'invalid'}`, { path, field });
  }
  const file = Object.fromEntries(Object.entries(parsed.data).filter(([, v]) => v !== undefined));
  return { ...config, ...file };
}
