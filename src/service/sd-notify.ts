import { inject, injectable } from 'inversify';
import { errnoError } from '../common/errors.js';
import { LoggerFactory, type Logger } from '../common/tokens.js';
import { Libc } from '../ns/libc.js';
import { OwnedFd } from '../ns/owned-fd.js';

/**
 * sd_notify(3) without libsystemd: one datagram per message to $NOTIFY_SOCKET
 * (a path, or "@name" for the abstract namespace). A no-op when the variable is
 * unset, so `serve` behaves the same outside systemd. The watchdog is kept fed
 * at half of $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises.
 */
@injectable()
export class SdNotify {
  private readonly log: Logger;
  private readonly address: Buffer | null;
  private fd: OwnedFd | null = null;
  private watchdog: NodeJS.Timeout | null = null;

  constructor(@inject(Libc) private readonly libc: Libc, @inject(LoggerFactory) loggers: LoggerFactory) {
    this.log = loggers.get('service:SdNotify');
    this.address = sockaddrUn(process.env['NOTIFY_SOCKET']);
  }

  get enabled(): boolean {
    return this.address !== null;
  }

  notify(state: Record<string, string | number>): void {
    if (!this.address) return;
    this.fd ??= this.open();
    const text = Object.entries(state).map(([k, v]) => `${k}=${v}`).join('\n');
    if (this.libc.sendto(this.fd.fd, Buffer.from(text), this.address) < 0) {
      this.log.warn('sd_notify failed', { error: errnoError('sendto', this.libc.errno(), 'NOTIFY_SOCKET').message });
    }
  }

  /** READY=1 and, when systemd asked for it, the watchdog heartbeat. */
  ready(status: string): void {
    this.notify({ READY: 1, STATUS: status, MAINPID: process.pid });
    const usec = Number(process.env['WATCHDOG_USEC'] ?? 0);
    const pid = process.env['WATCHDOG_PID'];
    if (usec > 0 && (pid === undefined || Number(pid) === process.pid)) {
      this.watchdog = setInterval(() => this.notify({ WATCHDOG: 1 }), Math.max(1, Math.floor(usec / 2000)));
      this.watchdog.unref();
    }
  }

  stopping(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.notify({ STOPPING: 1, STATUS: 'stopping' });
    this.fd?.close();
    this.fd = null;
  }

  private open(): OwnedFd {
    const fd = this.libc.unixDgramSocket();
    if (fd < 0) throw errnoError('socket', this.libc.errno(), 'sd_notify socket');
    return new OwnedFd(fd);
  }
}

/** struct sockaddr_un for a NOTIFY_SOCKET value; abstract names start with a NUL byte. */
export function sockaddrUn(path: string | undefined): Buffer | null {
  if (!path || (path[0] !== '/' && path[0] !== '@')) return null;
  const name = Buffer.from(path[0] === '@' ? `\0${path.slice(1)}` : path, 'utf8');
  if (name.length > 107) return null;
  const addr = Buffer.alloc(2 + name.length + (path[0] === '@' ? 0 : 1));
  addr.writeUInt16LE(1 /* AF_UNIX */, 0);
  name.copy(addr, 2);
  return addr;
}
