import { join } from 'node:path';
import { z } from 'zod';
import { inject, injectable } from 'inversify';
import { BrokerConfig, FileSystem, LoggerFactory, type Logger } from '../common/tokens.js';

const IdentitySchema = z.object({ dev: z.number().int().nonnegative(), ino: z.number().int().nonnegative() });

export const StoredRegistrationSchema = z.object({
  id: z.string().regex(/^r-[0-9a-f]{12}$/),
  mountpoint: z.string(),
  mountId: z.number().int().nonnegative(),
  mountIdKind: z.enum(['unique', 'legacy']),
  fstype: z.string().nullable(),
  source: z.string().nullable(),
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

const StateFileSchema = z.object({ version: z.literal(1), registrations: z.array(z.unknown()) });

/**
 * The on-disk record of registrations: one JSON file, replaced atomically
 * (temp file, fsync, rename, fsync of the directory), so a crash or a full disk
 * leaves either the old state or the new one, never a torn file. Saves are
 * serialised; a save that fails leaves the previous file in place.
 *
 * Each save takes its snapshot when its turn comes, and reports success or
 * failure to `settle` before the next save starts: the caller moves its
 * in-memory state there, so the next snapshot already reflects what this one
 * achieved (tests/integration/reliability-faults.test.ts, "full disk").
 */
@injectable()
export class StateStore {
  private readonly log: Logger;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    @inject(BrokerConfig) private readonly config: BrokerConfig,
    @inject(FileSystem) private readonly fs: FileSystem,
    @inject(LoggerFactory) loggers: LoggerFactory,
  ) {
    this.log = loggers.get('broker:StateStore');
  }

  get path(): string {
    return join(this.config.stateDir, 'registrations.json');
  }

  /** Read the records; invalid entries are dropped with a log line, a corrupt file is kept aside. */
  async load(): Promise<StoredRegistration[]> {
    if (!(await this.fs.exists(this.path))) return [];
    let parsed;
    try {
      parsed = StateFileSchema.parse(JSON.parse((await this.fs.readFile(this.path)).toString('utf8')));
    } catch (err) {
      // Kept for the operator: the first save would otherwise replace it, and with it the evidence.
      const aside = `${this.path}.corrupt-${new Date(Date.now()).toISOString().replace(/[:.]/g, '-')}`;
      await this.fs.rename(this.path, aside).catch(() => undefined);
      this.log.error('state file unreadable; kept aside, starting empty', { path: this.path, keptAs: aside, error: String(err) });
      return [];
    }
    const out: StoredRegistration[] = [];
    for (const raw of parsed.registrations) {
      const r = StoredRegistrationSchema.safeParse(raw);
      if (r.success) out.push(r.data);
      else this.log.warn('dropping malformed state record', { path: this.path, issue: r.error.issues[0]?.message });
    }
    return out;
  }

  /**
   * Persist a full snapshot, taken when this save's turn comes; resolves when
   * it is on disk (or rejects, leaving the old file). `settle(ok)` runs before
   * any later save takes its snapshot.
   */
  save(snapshot: () => StoredRegistration[], settle: (ok: boolean) => void = () => undefined): Promise<void> {
    const next = this.chain.then(async () => {
      const data = `${JSON.stringify({ version: 1, registrations: snapshot() }, null, 1)}\n`;
      try {
        await this.fs.mkdir(this.config.stateDir, 0o700);
        await this.fs.writeFileAtomic(this.path, data, 0o600);
      } catch (err) {
        settle(false);
        throw err;
      }
      settle(true);
    });
    this.chain = next.catch(() => undefined);
    return next;
  }
}
