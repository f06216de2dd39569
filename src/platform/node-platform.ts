import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { injectable } from 'inversify';
import type { Clock, FileSystem, ProcessSpawner } from '../common/tokens.js';

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

/** The real filesystem; writes are atomic (temp file, fsync, rename, fsync dir). */
@injectable()
export class NodeFileSystem implements FileSystem {
  readFile(path: string): Promise<Buffer> {
    return fsp.readFile(path);
  }

  async writeFileAtomic(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
    const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
    const fh = await fsp.open(tmp, 'w', mode);
    try {
      await fh.writeFile(data);
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
    const dir = await fsp.open(dirname(path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
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

@injectable()
export class NodeProcessSpawner implements ProcessSpawner {
  spawn(command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
    return spawn(command, args, options);
  }
}
