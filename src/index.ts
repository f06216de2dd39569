/** Public API for filesystem helpers written in TypeScript. */
export { BrokerClient, DEFAULT_ADMIN_SOCKET } from './client/broker-client.js';
export { BrokerError, ErrorCodes, type ErrorCode, type BrokerErrorJson } from './common/errors.js';
export { PROTOCOL_VERSION, VERSION } from './common/paths.js';
export type { ContextInfo, RegistrationInfo, RegistrationState } from './common/types.js';
