import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { injectable } from 'inversify';
import type { AppendFile, Clock, FileSystem, ProcessSpawner, ProcFs, Random, Signals, Timers } from '../common/tokens.js';

/** The real clock. */
@injectable()
export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }
  monotonic(): number {
    return performance.now();
  }
}

/** Real timers, unref'd unless asked to keep the process alive. */
@injectable()
export class SystemTimers implements Timers {
  after(ms: number, fn: () => void, opts?: { keepAlive?: boolean }): () => void {
    const t = setTimeout(fn, ms);
    if (opts?.keepAlive !== true) t.unref();
    return () => clearTimeout(t);
  }
}

/** Math.random: jitter only. */
@injectable()
export class SystemRandom implements Random {
  next(): number {
    return Math.random();
  }
}

/** The real filesystem; writes are atomic (temp file, fsync, rename, fsync dir). */
@injectable()
export class NodeFileSystem implements FileSystem {
  readFile(path: string): Promise<Buffer> {
    return fsp.readFile(path);
  }

  async writeFileAtomic(path: string, data: string | Buffer | AsyncIterable<string | Buffer>, mode = 0o600): Promise<void> {
    const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
    const fh = await fsp.open(tmp, 'w', mode);
    try {
      if (typeof data === 'string' || Buffer.isBuffer(data)) await fh.writeFile(data);
      else {
        let at = 0;
        for await (const chunk of data) {
          const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
          await writeAll(fh, buf, at);
          at += buf.length;
        }
      }
      await fh.sync();
    } catch (err) {
      // A full disk: leave nothing behind (a partial temp file would hold on to the space).
      await fh.close().catch(() => undefined);
      await fsp.rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    try {
      await fsp.rename(tmp, path);
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
    await syncDir(dirname(path));
  }

  async openAppend(path: string, mode = 0o600): Promise<AppendFile> {
    let fh: FileHandle;
    try {
      fh = await fsp.open(path, 'wx', mode);
      try {
        await syncDir(dirname(path)); // the new name must be durable before anything in it is acknowledged
      } catch (err) {
        await fh.close().catch(() => undefined);
        throw err;
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      fh = await fsp.open(path, 'r+');
    }
    const { size } = await fh.stat();
    return new NodeAppendFile(fh, size);
  }

  async statfs(path: string): Promise<{ availableBytes: number; blockSize: number }> {
    const s = await fsp.statfs(path);
    // root may also write into the blocks reserved for it (ext4's reserved blocks)
    return { availableBytes: (process.getuid?.() === 0 ? s.bfree : s.bavail) * s.bsize, blockSize: s.bsize };
  }

  async readdir(path: string): Promise<string[]> {
    try {
      return await fsp.readdir(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  async exists(path: string): Promise<boolean> {
    try {
      await fsp.lstat(path);
      return true;
    } catch {
      return false;
    }
  }

  async mkdir(path: string, mode = 0o755): Promise<void> {
    await fsp.mkdir(path, { recursive: true, mode });
  }

  rename(from: string, to: string): Promise<void> {
    return fsp.rename(from, to);
  }

  async unlink(path: string): Promise<void> {
    await fsp.rm(path, { force: true });
  }
}

class NodeAppendFile implements AppendFile {
  constructor(private readonly fh: FileHandle, readonly size: number) {}

  write(data: Buffer, offset: number): Promise<void> {
    return writeAll(this.fh, data, offset);
  }

  datasync(): Promise<void> {
    return this.fh.datasync();
  }

  truncate(length: number): Promise<void> {
    return this.fh.truncate(length);
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** All of `data` at `offset`: a short write is continued (the next write reports the error, e.g. ENOSPC). */
async function writeAll(fh: FileHandle, data: Buffer, offset: number): Promise<void> {
  for (let done = 0; done < data.length;) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, offset + done);
    if (bytesWritten === 0) throw Object.assign(new Error('EIO: write wrote nothing'), { code: 'EIO' });
    done += bytesWritten;
  }
}

async function syncDir(path: string): Promise<void> {
  const dir = await fsp.open(path, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

@injectable()
export class NodeProcessSpawner implements ProcessSpawner {
  spawn(command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
    return spawn(command, args, options);
  }
}

/** The real signals: this process's handlers and process.kill. */
@injectable()
export class NodeSignals implements Signals {
  on(signal: NodeJS.Signals, handler: () => void): () => void {
    process.on(signal, handler);
    return () => void process.off(signal, handler);
  }

  kill(pid: number, signal: NodeJS.Signals): void {
    process.kill(pid, signal);
  }
}

/** The real /proc. */
@injectable()
export class NodeProcFs implements ProcFs {
  readText(path: string): string {
    return readFileSync(`/proc/${path}`, 'utf8');
  }
}
