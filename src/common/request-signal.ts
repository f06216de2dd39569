import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The AbortSignal of the request an upcall is made for, when its caller has a
 * budget of its own (the request-key handler: the kernel's requester sleeps
 * until it answers). Work far below the op, a DNS lookup holding a relay and
 * the container's slots, reads it here and stops when the budget ends, so
 * nothing outlives the request it was for.
 */
export const requestSignal = new AsyncLocalStorage<AbortSignal>();
