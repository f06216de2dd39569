/**
 * An in-memory FileSystem (src/common/tokens.ts) for unit tests of the state
 * store: every call is logged, any call can be made to fail or to wait, the
 * disk can be small (ENOSPC with a partial write, as tmpfs does), and `image()`
 * copies the files as they are at that instant: what a broker SIGKILLed
 * there would find on restart.
 */
import { basename, dirname } from 'node:path';
import type { AppendFile, FileSystem } from '../../src/common/tokens.js';

export type FsOp = 'readFile' | 'writeFileAtomic' | 'exists' | 'mkdir' | 'rename' | 'unlink' | 'readdir' | 'openAppend' | 'statfs'
  | 'write' | 'datasync' | 'truncate' | 'close';

export interface FsCall {
  op: FsOp;
  path: string;
  /** Bytes written (write, writeFileAtomic), or the new length (truncate). */
  bytes?: number;
  /** writeFileAtomic: how many chunks the data came in. */
  chunks?: number;
  /** write: what and where. */
  data?: Buffer;
  offset?: number;
}

/** Runs before a call does anything; may throw (the call fails) or wait. */
export type FsHook = (call: FsCall) => void | Promise<void>;

export function errno(code: string): Error {
  return Object.assign(new Error(`${code}: injected`), { code });
}

export class MemoryFs implements FileSystem {
  readonly files = new Map<string, Buffer>();
  readonly modes = new Map<string, number>();
  readonly calls: FsCall[] = [];
  /** Total space in bytes (files take whole blocks, as on tmpfs); Infinity: no limit. */
  capacity = Infinity;
  blockSize = 4096;
  hook: FsHook | null = null;

  /** The files as they are now (a crash here leaves exactly these). */
  image(): MemoryFs {
    const copy = new MemoryFs();
    for (const [p, b] of this.files) copy.files.set(p, Buffer.from(b));
    for (const [p, m] of this.modes) copy.modes.set(p, m);
    copy.capacity = this.capacity;
    copy.blockSize = this.blockSize;
    return copy;
  }

  text(path: string): string {
    return this.files.get(path)?.toString('utf8') ?? '';
  }

  count(op: FsOp, pathEnd = ''): number {
    return this.calls.filter((c) => c.op === op && c.path.endsWith(pathEnd)).length;
  }

  used(): number {
    let n = 0;
    for (const b of this.files.values()) n += Math.ceil(b.length / this.blockSize) * this.blockSize;
    return n;
  }

  private async enter(call: FsCall): Promise<void> {
    this.calls.push(call);
    await this.hook?.(call);
  }

  private enoent(path: string): Error {
    return Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
  }

  /** Grow `path` to hold `data` at `offset`, as far as the space allows (partial, then ENOSPC). */
  put(path: string, data: Buffer, offset: number): void {
    const old = this.files.get(path) ?? Buffer.alloc(0);
    const end = offset + data.length;
    const room = this.capacity - (this.used() - Math.ceil(old.length / this.blockSize) * this.blockSize);
    const fits = Math.min(end, Math.max(old.length, Math.floor(room / this.blockSize) * this.blockSize));
    const next = Buffer.alloc(Math.max(old.length, fits));
    old.copy(next);
    data.copy(next, offset, 0, Math.max(0, fits - offset));
    this.files.set(path, next);
    if (fits < end) throw errno('ENOSPC');
  }

  async readFile(path: string): Promise<Buffer> {
    await this.enter({ op: 'readFile', path });
    const b = this.files.get(path);
    if (!b) throw this.enoent(path);
    return Buffer.from(b);
  }

  async writeFileAtomic(path: string, data: string | Buffer | AsyncIterable<string | Buffer>, mode = 0o600): Promise<void> {
    const parts: Buffer[] = [];
    if (typeof data === 'string' || Buffer.isBuffer(data)) parts.push(Buffer.from(data));
    else for await (const c of data) parts.push(Buffer.from(c));
    const all = Buffer.concat(parts);
    await this.enter({ op: 'writeFileAtomic', path, bytes: all.length, chunks: parts.length });
    const tmp = `${dirname(path)}/.${basename(path)}.1.tmp`;
    try {
      this.put(tmp, all, 0);
    } finally {
      const written = this.files.get(tmp);
      this.files.delete(tmp);
      if (written && written.length === all.length) {
        this.files.set(path, written);
        this.modes.set(path, mode);
      }
    }
  }

  async exists(path: string): Promise<boolean> {
    await this.enter({ op: 'exists', path });
    return this.files.has(path) || this.modes.has(path);
  }

  async mkdir(path: string, mode = 0o755): Promise<void> {
    await this.enter({ op: 'mkdir', path });
    if (!this.modes.has(path)) this.modes.set(path, mode);
  }

  async rename(from: string, to: string): Promise<void> {
    await this.enter({ op: 'rename', path: to });
    const b = this.files.get(from);
    if (!b) throw this.enoent(from);
    this.files.delete(from);
    this.files.set(to, b);
    this.modes.set(to, this.modes.get(from) ?? 0o600);
    this.modes.delete(from);
  }

  async unlink(path: string): Promise<void> {
    await this.enter({ op: 'unlink', path });
    this.files.delete(path);
    this.modes.delete(path);
  }

  async readdir(path: string): Promise<string[]> {
    await this.enter({ op: 'readdir', path });
    return [...this.files.keys()].filter((p) => dirname(p) === path).map((p) => basename(p)).sort();
  }

  async openAppend(path: string, mode = 0o600): Promise<AppendFile> {
    await this.enter({ op: 'openAppend', path });
    if (!this.files.has(path)) {
      this.files.set(path, Buffer.alloc(0));
      this.modes.set(path, mode);
    }
    const fs = this;
    let open = true;
    const live = () => {
      if (!open) throw errno('EBADF');
    };
    return {
      size: this.files.get(path)!.length,
      async write(data: Buffer, offset: number) {
        await fs.enter({ op: 'write', path, bytes: data.length, data, offset });
        live();
        fs.put(path, data, offset);
      },
      async datasync() {
        await fs.enter({ op: 'datasync', path });
        live();
      },
      async truncate(length: number) {
        await fs.enter({ op: 'truncate', path, bytes: length });
        live();
        const b = fs.files.get(path) ?? Buffer.alloc(0);
        const next = Buffer.alloc(length);
        b.copy(next, 0, 0, Math.min(length, b.length));
        fs.files.set(path, next);
      },
      async close() {
        await fs.enter({ op: 'close', path });
        open = false;
      },
    };
  }

  async statfs(path: string): Promise<{ availableBytes: number; blockSize: number }> {
    await this.enter({ op: 'statfs', path });
    return { availableBytes: this.capacity === Infinity ? Number.MAX_SAFE_INTEGER : this.capacity - this.used(), blockSize: this.blockSize };
  }
}

/** A gate a hook can wait on: `wait()` until `open()`. */
export class Gate {
  private release!: () => void;
  readonly opened = new Promise<void>((r) => (this.release = r));
  open(): void {
    this.release();
  }
}
