import { join } from 'node:path';
import { z } from 'zod';
import { inject, injectable } from 'inversify';
import { type AppendFile, BrokerConfig, FileSystem, LoggerFactory, type Logger } from '../common/tokens.js';

const IdentitySchema = z.object({ dev: z.number().int().nonnegative(), ino: z.number().int().nonnegative() });

export const StoredRegistrationSchema = z.object({
  id: z.string().regex(/^r-[0-9a-f]{12}$/),
  mountpoint: z.string(),
  mountId: z.number().int().nonnegative(),
  mountIdKind: z.enum(['unique', 'legacy']),
  fstype: z.string().nullable(),
  source: z.string().nullable(),
  sourceFrom: z.enum(['kernel', 'agent', 'caller']).optional(),
  /** The mount's mount namespace (watched registrations only; absent in older records): nsfs identity, 64-bit id in decimal. */
  mntns: IdentitySchema.extend({ id: z.string().regex(/^[1-9][0-9]{0,19}$/).refine((s) => BigInt(s) < 2n ** 64n, 'not a 64-bit id').optional() }).optional(),
  mounter: z.object({ pid: z.number().int(), uid: z.number().int(), gid: z.number().int() }),
  createdAt: z.string(),
  context: z.object({
    initPid: z.number().int().positive(),
    initStartTime: z.number().int().nonnegative(),
    pidns: IdentitySchema,
    userns: IdentitySchema,
  }),
});
export type StoredRegistration = z.infer<typeof StoredRegistrationSchema>;

/** Version 1: the whole state, rewritten on every change. Version 2: a snapshot, with the journals from `generation` on. */
const SnapshotSchema = z.union([
  z.object({ version: z.literal(1), registrations: z.array(z.unknown()) }),
  z.object({ version: z.literal(2), generation: z.number().int().nonnegative(), registrations: z.array(z.unknown()) }),
]);

const JournalOpSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('add'), reg: StoredRegistrationSchema }),
  z.object({ op: z.literal('del'), id: StoredRegistrationSchema.shape.id }),
]);
type JournalOp = z.infer<typeof JournalOpSchema>;

export const SNAPSHOT_FILE = 'registrations.json';
export const JOURNAL_PREFIX = 'registrations.journal.';
const JOURNAL_NAME = /^registrations\.journal\.(\d+)$/;
/** NodeFileSystem.writeFileAtomic's temp file for the snapshot; one left by a crash is removed at load. */
const SNAPSHOT_TEMP = /^\.registrations\.json\.\d+\.tmp$/;
const SNAPSHOT_HEADER_BYTES = 64;
/** Free space is asked of the filesystem (statfs) again after this long, or once less than this much is left beyond the reserve. */
const SPACE_RECHECK_MS = 1000;
const SPACE_SLACK_BYTES = 64 * 1024 * 1024;

export interface StateStoreTuning {
  /** Compact once the journals hold more than max(this, live registrations) ops. */
  compactMinOps: number;
  /** Records serialised per chunk of a snapshot; the event loop runs between chunks. */
  chunkRecords: number;
}
export const DEFAULT_STATE_STORE_TUNING: StateStoreTuning = { compactMinOps: 1000, chunkRecords: 256 };

/** One add or del waiting for its batch; settled once the batch is on disk or failed. */
interface Pending {
  id: string;
  /** The record's JSON for an add; null for a del. */
  record: string | null;
  resolve(): void;
  reject(err: unknown): void;
}

/** A compaction's snapshot: generation `gen` holds exactly `records` (the durable state when journal `gen` began). */
interface SnapshotPlan {
  gen: number;
  records: string[];
}

function noSpace(message: string): Error {
  return Object.assign(new Error(`ENOSPC: ${message}`), { code: 'ENOSPC' });
}

/**
 * The on-disk record of registrations: a snapshot plus journals of changes.
 *
 * - `registrations.json` (version 2) is a snapshot of generation G, replaced
 *   atomically (temp file, fsync, rename, fsync of the directory) only by a
 *   compaction. Version 1 files (the whole state, no journals) still load, as
 *   generation 0.
 * - `registrations.journal.<gen>` are JSON lines, one op each: `{"op":"add","reg":{...}}`
 *   or `{"op":"del","id":"r-..."}`. The state is the snapshot with every journal
 *   of generation >= G applied in order; older journals are leftovers of a
 *   compaction and are ignored. Ops are idempotent by id.
 * - Group commit: adds and dels queue; a flush writes everything queued in one
 *   write and one fdatasync, then settles every op of the batch. A failed
 *   flush rejects the whole batch and cuts the journal back to where it was
 *   (if even that fails, the next flush first writes a snapshot and moves to a
 *   new journal), so a later load never applies an op that was refused.
 * - A torn tail (a crash mid-write): load stops at the first line that does
 *   not parse, warns, and the next append starts by cutting it off (a tail
 *   with whole bad lines is kept aside as `.corrupt-<time>` first).
 * - Compaction (journals past max(1000 ops, the live count), or after restore):
 *   appends move to journal G+1 at once, then a snapshot of G+1 (exactly what was
 *   durable at the switch, from this store's own view, never an unsaved op) is
 *   written in chunks, off the event loop, while appends continue, renamed in,
 *   and the older journals removed. A crash anywhere leaves a state that loads
 *   to the durable one.
 * - Room for a compaction is kept: an add that would leave less free space on
 *   the state filesystem than a snapshot of the state needs is refused with
 *   ENOSPC (after a compaction, if that would free enough), as on a full disk,
 *   so unregistering always frees room again.
 */
@injectable()
export class StateStore {
  readonly tuning: StateStoreTuning = { ...DEFAULT_STATE_STORE_TUNING };
  private readonly log: Logger;
  /** What is on disk, by id: each record's JSON, as a snapshot holds it. */
  private readonly durable = new Map<string, string>();
  /** Bytes a snapshot of `durable` takes without its header (records and separators). */
  private liveBytes = 0;
  /** Generation of the snapshot on disk, and its size. */
  private generation = 0;
  private snapshotBytes = 0;
  /** The journal taking appends: its generation, its handle (opened on first use), its good length, ops in it. */
  private journalGen = 0;
  private journal: AppendFile | null = null;
  private journalSize = 0;
  private journalOps = 0;
  /** Part of it past journalSize may hold a refused batch (its cut failed): never reuse it for a snapshot of its generation. */
  private journalDirty = false;
  /** Ops and bytes in journals older than journalGen that a load still applies (no snapshot covers them yet). */
  private olderOps = 0;
  private olderBytes = 0;
  /** Before the next append: write a snapshot and move to a new journal (a failed cut left the journal in doubt). */
  private mustCompact = false;
  /** Journal ops below which automatic compaction does not start again after a failed one. */
  private compactFloor = 0;
  /** Free space as statfs last said, when, and the bytes written since. */
  private space: { availableBytes: number; blockSize: number; at: number; written: number } | null = null;

  private opened: Promise<void> | null = null;
  private loaded: StoredRegistration[] | null = null;
  private queue: Pending[] = [];
  private flushQueued = false;
  /** Flushes, journal switches, in order: one at a time. */
  private chain: Promise<unknown> = Promise.resolve();
  /** Compactions, one at a time. */
  private compactions: Promise<unknown> = Promise.resolve();
  /** The snapshot being written outside the chain, if any. */
  private snapshotWrite: Promise<void> | null = null;
  private compactionRunning = false;

  constructor(
    @inject(BrokerConfig) private readonly config: BrokerConfig,
    @inject(FileSystem) private readonly fs: FileSystem,
    @inject(LoggerFactory) loggers: LoggerFactory,
  ) {
    this.log = loggers.get('broker:StateStore');
  }

  /** The snapshot file. */
  get path(): string {
    return join(this.config.stateDir, SNAPSHOT_FILE);
  }

  private journalPath(gen: number): string {
    return join(this.config.stateDir, `${JOURNAL_PREFIX}${gen}`);
  }

  /**
   * Read the snapshot and the journals; invalid records are dropped with a log
   * line, a corrupt snapshot is kept aside. The first call returns what was
   * read; later ones what is durable now.
   */
  async load(): Promise<StoredRegistration[]> {
    await this.open();
    const out = this.loaded ?? [...this.durable.values()].map((r) => JSON.parse(r) as StoredRegistration);
    this.loaded = null;
    return out;
  }

  /** Resolves once the record is on disk; rejects (and leaves no trace on disk) if it cannot be. */
  add(record: StoredRegistration): Promise<void> {
    return this.enqueue(record.id, JSON.stringify(record));
  }

  /** Resolves once the removal is on disk; rejects (the record stays) if it cannot be. */
  remove(id: string): Promise<void> {
    return this.enqueue(id, null);
  }

  /**
   * Write a snapshot of what is durable and drop the journals it covers.
   * `keep`: durable records it says no to are left out (restore: the stale
   * ones). Resolves once the snapshot is renamed in.
   */
  compact(keep?: (id: string) => boolean): Promise<void> {
    const run = this.compactions.then(async () => {
      let write: Promise<void> = Promise.resolve();
      await this.exclusive(async () => {
        write = this.finishCompaction(await this.beginCompaction(keep));
        // Set before the chain moves on: a compaction inside the chain waits for this one first.
        const tracked: Promise<void> = write.then(() => undefined, () => undefined).finally(() => {
          if (this.snapshotWrite === tracked) this.snapshotWrite = null;
        });
        this.snapshotWrite = tracked;
      });
      await write;
    });
    this.compactions = run.catch(() => undefined);
    return run;
  }

  /** Wait for queued ops and a running compaction, then close the journal. */
  async close(): Promise<void> {
    await this.exclusive(async () => undefined);
    await this.compactions;
    await this.exclusive(async () => {
      const j = this.journal;
      this.journal = null;
      await j?.close();
    });
  }

  // ---------------------------------------------------------------------------
  // Load

  private open(): Promise<void> {
    this.opened ??= this.readState().catch((err: unknown) => {
      this.opened = null; // the next op tries again
      throw err;
    });
    return this.opened;
  }

  private async readState(): Promise<void> {
    const dir = this.config.stateDir;
    const names = await this.fs.readdir(dir);
    for (const name of names) if (SNAPSHOT_TEMP.test(name)) await this.fs.unlink(join(dir, name)).catch(() => undefined);
    const gens = names.flatMap((n) => {
      const m = JOURNAL_NAME.exec(n);
      return m ? [Number(m[1])] : [];
    }).sort((a, b) => a - b);

    const state = new Map<string, StoredRegistration>();
    const snap = names.includes(SNAPSHOT_FILE) ? await this.readSnapshot(gens.length > 0) : null;
    for (const r of snap?.records ?? []) state.set(r.id, r);
    // No snapshot (or an unreadable one): every journal there is.
    const generation = snap?.generation ?? gens[0] ?? 0;
    const live = gens.filter((g) => g >= generation);
    const newest = live.at(-1) ?? generation;
    let olderOps = 0;
    let olderBytes = 0;
    let newestOps = 0;
    let newestGood = 0;
    for (const gen of live) {
      const { ops, good, size } = await this.readJournal(gen, state);
      if (gen === newest) {
        newestOps = ops;
        newestGood = good; // the next append cuts off what follows (ensureJournal)
      } else {
        olderOps += ops;
        olderBytes += size;
      }
    }
    this.generation = generation;
    this.snapshotBytes = snap?.bytes ?? 0;
    this.journalGen = newest;
    this.journalOps = newestOps;
    this.journalSize = newestGood;
    this.olderOps = olderOps;
    this.olderBytes = olderBytes;
    for (const [id, r] of state) this.setDurable(id, JSON.stringify(r));
    this.loaded = [...state.values()];
  }

  private async readSnapshot(haveJournals: boolean): Promise<{ generation: number; bytes: number; records: StoredRegistration[] } | null> {
    let parsed;
    let bytes;
    try {
      const buf = await this.fs.readFile(this.path);
      bytes = buf.length;
      parsed = SnapshotSchema.parse(JSON.parse(buf.toString('utf8')));
    } catch (err) {
      // Kept for the operator: the first compaction would otherwise replace it, and with it the evidence.
      const aside = `${this.path}.corrupt-${stamp()}`;
      await this.fs.rename(this.path, aside).catch(() => undefined);
      this.log.error(`state file unreadable; kept aside, starting ${haveJournals ? 'from the journals alone' : 'empty'}`,
        { path: this.path, keptAs: aside, error: String(err) });
      return null;
    }
    const records: StoredRegistration[] = [];
    for (const raw of parsed.registrations) {
      const r = StoredRegistrationSchema.safeParse(raw);
      if (r.success) records.push(r.data);
      else this.log.warn('dropping malformed state record', { path: this.path, issue: r.error.issues[0]?.message });
    }
    return { generation: parsed.version === 2 ? parsed.generation : 0, bytes, records };
  }

  /** Apply one journal's ops to `state` up to its first bad line; `good`: the length of its good part. */
  private async readJournal(gen: number, state: Map<string, StoredRegistration>): Promise<{ ops: number; good: number; size: number }> {
    const path = this.journalPath(gen);
    const buf = await this.fs.readFile(path);
    let good = 0;
    let ops = 0;
    for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a, good)) {
      const op = parseOp(buf.toString('utf8', good, nl));
      if (!op) break;
      if (op.op === 'add') state.set(op.reg.id, op.reg);
      else state.delete(op.id);
      ops++;
      good = nl + 1;
    }
    if (good < buf.length) {
      const tail = buf.subarray(good);
      // A crash mid-append leaves part of one line; whole lines that do not parse are something else: keep them.
      const corrupt = tail.includes(0x0a);
      const aside = corrupt ? `${path}.corrupt-${stamp()}` : null;
      if (aside) await this.fs.writeFileAtomic(aside, tail, 0o600).catch(() => undefined);
      this.log.warn(corrupt ? 'state journal has lines that do not parse; ignoring them and what follows' : 'state journal ends in a torn line (a crash mid-write); ignoring it',
        { path, offset: good, ignoredBytes: tail.length, ...(aside ? { keptAs: aside } : {}) });
    }
    return { ops, good, size: buf.length };
  }

  // ---------------------------------------------------------------------------
  // Appends

  private enqueue(id: string, record: string | null): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ id, record, resolve, reject });
      if (this.flushQueued) return;
      this.flushQueued = true;
      void this.exclusive(async () => {
        // Let everything that arrives in this turn of the event loop join the batch.
        await new Promise((r) => setImmediate(r));
        this.flushQueued = false;
        await this.flush(this.queue.splice(0));
      });
    });
  }

  /** Run `fn` after every flush and journal switch queued before it. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** One batch: one write, one fdatasync; settles every op in it. Never throws. */
  private async flush(batch: Pending[]): Promise<void> {
    let admitted = batch;
    try {
      await this.open();
      await this.ensureJournal();
      if (this.mustCompact) await this.compactInChain();
      admitted = await this.admit(batch);
    } catch (err) {
      for (const p of admitted) p.reject(err);
      return;
    }
    if (admitted.length === 0) return;
    const data = Buffer.from(admitted.map(journalLine).join(''));
    const at = this.journalSize;
    try {
      const j = await this.ensureJournal();
      await j.write(data, at);
      await j.datasync();
    } catch (err) {
      await this.cutBack(at, err);
      for (const p of admitted) p.reject(err);
      return;
    }
    this.journalSize = at + data.length;
    this.journalOps += admitted.length;
    if (this.space) this.space.written += data.length;
    for (const p of admitted) {
      if (p.record === null) this.deleteDurable(p.id);
      else this.setDurable(p.id, p.record);
    }
    for (const p of admitted) p.resolve();
    this.maybeCompact();
  }

  /** After a failed batch: the journal back to its last good length, durably; else a snapshot before the next append. */
  private async cutBack(at: number, cause: unknown): Promise<void> {
    try {
      const j = await this.ensureJournal();
      await j.truncate(at);
      await j.datasync();
    } catch (err) {
      this.mustCompact = true;
      this.journalDirty = true;
      this.log.error('cannot cut a failed batch off the state journal; a snapshot comes before the next change', { path: this.journalPath(this.journalGen), offset: at, error: String(err), cause: String(cause) });
    }
  }

  /** The journal handle, opened (and created, 0600 in a 0700 directory) on first use; a torn tail is cut off first. */
  private async ensureJournal(): Promise<AppendFile> {
    if (this.journal) return this.journal;
    await this.fs.mkdir(this.config.stateDir, 0o700);
    const j = await this.fs.openAppend(this.journalPath(this.journalGen), 0o600);
    if (j.size > this.journalSize) {
      try {
        await j.truncate(this.journalSize);
        await j.datasync();
      } catch (err) {
        await j.close().catch(() => undefined);
        throw err;
      }
    } else if (j.size < this.journalSize) {
      // Shorter than what was read or written (cut from outside): the snapshot restores what this store holds.
      this.log.warn('state journal is shorter than expected; writing a snapshot', { path: this.journalPath(this.journalGen), size: j.size, expected: this.journalSize });
      this.journalSize = j.size;
      this.mustCompact = true;
    }
    this.journal = j;
    return j;
  }

  /**
   * Keep room for a compaction: adds that would leave less free space than a
   * snapshot of the state needs are refused with ENOSPC. If that refuses
   * some and a compaction would free space, compact first and look again.
   */
  private async admit(batch: Pending[]): Promise<Pending[]> {
    if (!batch.some((p) => p.record !== null)) return batch;
    let fit = await this.fit(batch, false);
    if (fit.refused.length > 0 && fit.reclaimable) {
      try {
        await this.compactInChain();
        fit = await this.fit(batch, true);
      } catch (err) {
        this.log.warn('cannot compact the state to make room', { error: String(err) });
      }
    }
    if (fit.refused.length > 0) {
      const err = noSpace(`no room left on the state filesystem for this registration and a snapshot of all (${this.config.stateDir})`);
      for (const p of fit.refused) p.reject(err);
    }
    return fit.admitted;
  }

  private async fit(batch: Pending[], fresh: boolean): Promise<{ admitted: Pending[]; refused: Pending[]; reclaimable: boolean }> {
    let space;
    try {
      space = await this.freeSpace(fresh);
    } catch {
      return { admitted: batch, refused: [], reclaimable: false }; // unknown: the write finds out
    }
    const bs = Math.max(1, space.blockSize);
    const blocks = (n: number) => Math.ceil(n / bs) * bs;
    const snapshotNeed = (live: number) => blocks(SNAPSHOT_HEADER_BYTES + live) + bs;
    let avail = space.availableBytes;
    let size = this.journalSize;
    let live = this.liveBytes;
    const admitted: Pending[] = [];
    const refused: Pending[] = [];
    for (const p of batch) {
      const bytes = Buffer.byteLength(journalLine(p));
      const grow = blocks(size + bytes) - blocks(size);
      // A del frees its record only once it is durable: not counted here.
      const liveAfter = p.record === null ? live : live + Buffer.byteLength(p.record) + 2;
      if (p.record !== null && avail - grow < snapshotNeed(liveAfter)) {
        refused.push(p);
        continue;
      }
      admitted.push(p);
      avail -= grow;
      size += bytes;
      live = liveAfter;
    }
    const onDisk = blocks(this.snapshotBytes) + blocks(this.olderBytes) + blocks(this.journalSize);
    return { admitted, refused, reclaimable: onDisk > blocks(SNAPSHOT_HEADER_BYTES + this.liveBytes) };
  }

  /** statfs, or while there is plenty of room and it is recent, what it said less what was written since (no syscall per batch). */
  private async freeSpace(fresh: boolean): Promise<{ availableBytes: number; blockSize: number }> {
    const s = this.space;
    const now = performance.now();
    if (!fresh && s && now - s.at < SPACE_RECHECK_MS && s.availableBytes - s.written > 2 * (SNAPSHOT_HEADER_BYTES + this.liveBytes) + SPACE_SLACK_BYTES) {
      return { availableBytes: s.availableBytes - s.written, blockSize: s.blockSize };
    }
    this.space = null;
    const got = await this.fs.statfs(this.config.stateDir);
    this.space = { ...got, at: performance.now(), written: 0 };
    return got;
  }

  // ---------------------------------------------------------------------------
  // Compaction

  private maybeCompact(): void {
    const ops = this.olderOps + this.journalOps;
    if (this.compactionRunning || ops <= Math.max(this.tuning.compactMinOps, this.durable.size, this.compactFloor)) return;
    this.compactionRunning = true;
    this.compact().then(() => {
      this.compactFloor = 0;
    }, (err: unknown) => {
      this.compactFloor = ops + this.tuning.compactMinOps; // not again before that many more ops
      this.log.warn('state compaction failed; the journal keeps growing', { error: String(err), journalOps: ops });
    }).finally(() => {
      this.compactionRunning = false;
    });
  }

  /** Switch appends to a new journal (unless the current one is empty) and take what the snapshot must hold. Inside the chain. */
  private async beginCompaction(keep?: (id: string) => boolean): Promise<SnapshotPlan> {
    await this.open();
    if (keep) for (const id of [...this.durable.keys()]) if (!keep(id)) this.deleteDurable(id);
    if (this.journalSize > 0 || this.journalDirty) await this.switchJournal();
    return { gen: this.journalGen, records: [...this.durable.values()] };
  }

  /** A whole compaction while holding the chain: nothing is appended until its snapshot is in. */
  private async compactInChain(): Promise<void> {
    await this.snapshotWrite; // one snapshot at a time (it never waits for the chain)
    await this.finishCompaction(await this.beginCompaction());
    this.mustCompact = false;
  }

  private async switchJournal(): Promise<void> {
    const next = this.journalGen + 1;
    await this.fs.mkdir(this.config.stateDir, 0o700);
    const j = await this.fs.openAppend(this.journalPath(next), 0o600); // created, and its name made durable
    if (j.size > 0) await j.truncate(0);
    const old = this.journal;
    this.journal = j;
    this.olderOps += this.journalOps;
    this.olderBytes += this.journalSize;
    this.journalGen = next;
    this.journalSize = 0;
    this.journalOps = 0;
    this.journalDirty = false;
    await old?.close().catch(() => undefined);
  }

  /** Write the snapshot (chunked, the event loop runs between chunks), rename it in, remove the journals it covers. */
  private async finishCompaction(plan: SnapshotPlan): Promise<void> {
    const started = performance.now();
    let bytes = 0;
    const chunk = this.tuning.chunkRecords;
    async function* chunks(): AsyncGenerator<string> {
      const out = (s: string) => {
        bytes += Buffer.byteLength(s);
        return s;
      };
      yield out(`{"version":2,"generation":${plan.gen},"registrations":[\n`);
      for (let i = 0; i < plan.records.length; i += chunk) {
        if (i > 0) await new Promise((r) => setImmediate(r));
        const end = Math.min(i + chunk, plan.records.length);
        yield out(`${plan.records.slice(i, end).join(',\n')}${end < plan.records.length ? ',' : ''}\n`);
      }
      yield out(']}\n');
    }
    await this.fs.mkdir(this.config.stateDir, 0o700);
    await this.fs.writeFileAtomic(this.path, chunks(), 0o600);
    if (this.space) this.space.written += bytes;
    this.generation = plan.gen;
    this.snapshotBytes = bytes;
    // Every journal older than plan.gen is covered now; journalGen is plan.gen (no switch runs while a snapshot is written).
    this.olderOps = 0;
    this.olderBytes = 0;
    for (const name of await this.fs.readdir(this.config.stateDir).catch(() => [])) {
      const m = JOURNAL_NAME.exec(name);
      if (m && Number(m[1]) < plan.gen) {
        await this.fs.unlink(join(this.config.stateDir, name)).catch((err: unknown) => this.log.warn('cannot remove an old state journal', { name, error: String(err) }));
      }
    }
    this.log.info('state compacted', { generation: plan.gen, registrations: plan.records.length, bytes, ms: Math.round(performance.now() - started) });
  }

  private setDurable(id: string, record: string): void {
    this.deleteDurable(id);
    this.durable.set(id, record);
    this.liveBytes += Buffer.byteLength(record) + 2;
  }

  private deleteDurable(id: string): void {
    const old = this.durable.get(id);
    if (old === undefined) return;
    this.durable.delete(id);
    this.liveBytes -= Buffer.byteLength(old) + 2;
  }
}

function journalLine(p: Pending): string {
  return p.record === null ? `{"op":"del","id":${JSON.stringify(p.id)}}\n` : `{"op":"add","reg":${p.record}}\n`;
}

function parseOp(line: string): JournalOp | null {
  try {
    const r = JournalOpSchema.safeParse(JSON.parse(line));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

function stamp(): string {
  return new Date(Date.now()).toISOString().replace(/[:.]/g, '-');
}
