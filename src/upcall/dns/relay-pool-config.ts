/** How DNS relays are kept between upcalls (config `dns`, docs/operations.md): part of the one config schema. */
export type { RelayPoolConfig } from '../../common/config-schema.js';
export { DEFAULT_RELAY_POOL } from '../../common/defaults.js';
