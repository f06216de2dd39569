import type { BrokerConfig } from './tokens.js';
import { DEFAULT_NATIVE_DIR } from './paths.js';

/** The embedded default configuration: `serve` with no file runs on this. */
export function defaultConfig(): BrokerConfig {
  return {
    adminSocket: '/run/upcall-broker/broker.sock',
    tenantSocket: null,
    stateDir: '/var/lib/upcall-broker',
    logLevel: 'info',
    logFormat: 'json',
    nativeDir: DEFAULT_NATIVE_DIR,
    metricsListen: null,
    requestKey: { hostRequests: 'decline', negativeTimeoutSeconds: 60, retryTimeoutSeconds: 1, kernelThreadMaxExpirySeconds: 10, rules: [] },
  };
}
