import { closeSync } from 'node:fs';
import { BrokerError } from '../common/errors.js';

/**
 * A file descriptor with exactly one owner. Every fd the broker opens through
 * FFI is close-on-exec by the kernel's choice (pidfd_open, PIDFD_GET_*_NAMESPACE,
 * NS_GET_* and SO_PEERPIDFD all use O_CLOEXEC), and is wrapped here at once so
 * it is closed exactly once: `close()` is idempotent, and use after close is a bug
 * we report instead of touching whatever fd number the kernel reused.
 */
export class OwnedFd implements Disposable {
  #fd: number;

  constructor(fd: number) {
    if (!Number.isInteger(fd) || fd < 0) throw new BrokerError('E_INTERNAL', `not a file descriptor: ${fd}`);
    this.#fd = fd;
  }

  get fd(): number {
    if (this.#fd < 0) throw new BrokerError('E_INTERNAL', 'file descriptor used after close');
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    closeSync(fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
