/**
 * The embedded defaults, in one place: `serve` with no file runs on
 * defaultConfig(); `limits` and `dns` of a config hold overrides only, and
 * limitsOf() / relayPoolOf() are their full views. The request-key defaults
 * are the schema's own (src/common/config-schema.ts).
 */
import { type BrokerConfig, type Limits, type RelayPoolConfig, RequestKeySchema } from './config-schema.js';
import { DEFAULT_NATIVE_DIR } from './paths.js';
import { W } from './wire-constants.js';

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  globalInFlight: 512,
  tenantInFlight: 64,
  tenantConnections: 64,
  connectionInFlight: 16,
  messagesPerSecond: 500,
  messageBurst: 1000,
  maxMessageBytes: 64 * 1024,
  globalConnections: 1024,
  contextUpcalls: 16,
  replyBufferBytes: 64 * 1024,
  idleTimeoutMs: 60_000,
  containerRegistrations: 256,
});

export const DEFAULT_RELAY_POOL: Readonly<RelayPoolConfig> = Object.freeze({ relayReuseMs: 2000, relayIdleMs: 1000, relaysIdlePerContext: 4, relaysIdle: 256 });

/** The embedded default configuration: `serve` with no file runs on this. */
export function defaultConfig(): BrokerConfig {
  return {
    adminSocket: W.UB_DEFAULT_SOCKET,
    tenantSocket: null,
    stateDir: '/var/lib/upcall-broker',
    logLevel: 'info',
    logFormat: 'json',
    nativeDir: DEFAULT_NATIVE_DIR,
    metricsListen: null,
    requestKey: RequestKeySchema.parse({}),
  };
}

/** The limits in force: the defaults overlaid with the config's overrides. */
export function limitsOf(config: Pick<BrokerConfig, 'limits'>): Limits {
  return { ...DEFAULT_LIMITS, ...config.limits };
}

/** How DNS relays are kept: the defaults overlaid with the config's `dns` overrides. */
export function relayPoolOf(config: Pick<BrokerConfig, 'dns'>): RelayPoolConfig {
  return { ...DEFAULT_RELAY_POOL, ...config.dns };
}
