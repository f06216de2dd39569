/**
 * One error family for the whole broker. Every failure a caller can see has a
 * stable string code (never parse messages: tests and clients match codes), a
 * documented CLI exit status, and a JSON form that travels over the socket.
 */

export const ErrorCodes = {
  E_BAD_REQUEST: 2,
  E_PERMISSION: 3,
  E_NOT_FOUND: 4,
  E_NS_NOT_OWNED: 5,
  E_INIT_EXITED: 6,
  E_UPCALL_TIMEOUT: 7,
  E_BUSY: 8,
  E_UNAVAILABLE: 9,
  E_NO_KERNEL_FEATURE: 10,
  E_SPAWN: 11,
  E_CONFIG: 12,
  E_PROTOCOL: 13,
  E_NO_PROCESS: 14,
  E_MOUNT_FAILED: 16,
  E_QUOTA: 15,
  E_IO: 74,
  E_INTERNAL: 70,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ErrorCodes, value);
}

/** Exit status the CLI uses for a code (docs/cli.md lists them). */
export function exitStatusFor(code: ErrorCode): number {
  return ErrorCodes[code];
}

export interface BrokerErrorJson {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

export class BrokerError extends Error {
  override readonly name = 'BrokerError';

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  toJSON(): BrokerErrorJson {
    const json: BrokerErrorJson = { code: this.code, message: this.message };
    if (Object.keys(this.details).length > 0) json.details = this.details;
    return json;
  }

  static fromJSON(json: unknown): BrokerError {
    const o = (typeof json === 'object' && json !== null ? json : {}) as Record<string, unknown>;
    const code = isErrorCode(o['code']) ? o['code'] : 'E_INTERNAL';
    const message = typeof o['message'] === 'string' ? o['message'] : 'unknown error';
    const details = typeof o['details'] === 'object' && o['details'] !== null
      ? (o['details'] as Record<string, unknown>) : {};
    return new BrokerError(code, message, details);
  }

  /** Anything thrown, as a BrokerError (unknown errors become E_INTERNAL). */
  static from(err: unknown): BrokerError {
    if (err instanceof BrokerError) return err;
    const message = err instanceof Error ? err.message : String(err);
    const errno = (err as NodeJS.ErrnoException | undefined)?.code;
    if (typeof errno === 'string' && errno in ERRNO_NAMES_TO_CODE) {
      return new BrokerError(ERRNO_NAMES_TO_CODE[errno]!, message, { errno }, { cause: err });
    }
    return new BrokerError('E_INTERNAL', message, {}, { cause: err });
  }
}

/** errno name -> broker code: the one table used at the native boundary. */
const ERRNO_NAMES_TO_CODE: Record<string, ErrorCode> = {
  EPERM: 'E_PERMISSION',
  EACCES: 'E_PERMISSION',
  ESRCH: 'E_NO_PROCESS',
  ENOENT: 'E_NOT_FOUND',
  ENOSYS: 'E_NO_KERNEL_FEATURE',
  ENOTTY: 'E_NO_KERNEL_FEATURE',
  EOPNOTSUPP: 'E_NO_KERNEL_FEATURE',
  EAGAIN: 'E_BUSY',
  EMFILE: 'E_BUSY',
  ENFILE: 'E_BUSY',
  ENOMEM: 'E_BUSY',
  ECONNREFUSED: 'E_UNAVAILABLE',
  ETIMEDOUT: 'E_UPCALL_TIMEOUT',
  EINVAL: 'E_BAD_REQUEST',
  EBADF: 'E_INTERNAL',
  EIO: 'E_IO',
  ENOSPC: 'E_IO',
};

/** Linux x86_64/generic errno numbers we can meet at the FFI boundary. */
const ERRNO_NUMBERS: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 3: 'ESRCH', 4: 'EINTR', 5: 'EIO', 9: 'EBADF', 11: 'EAGAIN',
  12: 'ENOMEM', 13: 'EACCES', 16: 'EBUSY', 22: 'EINVAL', 23: 'ENFILE', 24: 'EMFILE',
  25: 'ENOTTY', 27: 'EFBIG', 28: 'ENOSPC', 38: 'ENOSYS', 40: 'ELOOP', 61: 'ENODATA', 71: 'EPROTO', 95: 'EOPNOTSUPP',
  101: 'ENETUNREACH', 104: 'ECONNRESET', 110: 'ETIMEDOUT', 111: 'ECONNREFUSED', 113: 'EHOSTUNREACH',
};

export function errnoName(errno: number): string {
  return ERRNO_NUMBERS[errno] ?? `errno ${errno}`;
}

/** Build the BrokerError for a failed syscall; `code` overrides the table when the caller knows better. */
export function errnoError(syscall: string, errno: number, what: string, code?: ErrorCode): BrokerError {
  const name = errnoName(errno);
  const mapped = code ?? ERRNO_NAMES_TO_CODE[name] ?? 'E_INTERNAL';
  return new BrokerError(mapped, `${what}: ${syscall} failed: ${name}`, { syscall, errno, errnoName: name });
}
