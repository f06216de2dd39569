import type { ChildProcess } from 'node:child_process';
import { PassThrough, type Readable } from 'node:stream';
import { inject, injectable } from 'inversify';
import type { Context } from '../../broker/context-table.js';
import { BrokerError, errnoName } from '../../common/errors.js';
import { Libc } from '../../ns/libc.js';
import { Pidfd } from '../../ns/pidfd.js';
import { Spawner } from '../native-spawner.js';
import { UpcallRunner } from '../zygote-runner.js';
import { RELAY_MAX_FILE, RelayTransport } from './relay-transport.js';

export interface RunningRelay {
  transport: RelayTransport;
  /**
   * End the relay (and anything it started). SpawnerRelayLauncher resolves
   * once it is gone; ZygoteRelayLauncher at once, while the zygote ends it in
   * the background (EOF, then SIGKILL after 2 s): the upcall's answer does not
   * wait for the relay's exit.
   */
  stop(): Promise<void>;
}

/** Starts the netrelay builtin as a child of a context's init. */
export const RelayLauncher = Symbol('RelayLauncher');
export interface RelayLauncher {
  start(context: Context): Promise<RunningRelay>;
}

/**
 * The zygote's bound on a relay: past DnsServiceImpl's own 60 s deadline, so
 * the zygote's timeout only ever catches a relay nobody stopped.
 */
const RELAY_TIMEOUT_MS = 65_000;
/** What the relay may print on stderr (it prints nothing; kept for diagnostics). */
const RELAY_STDERR_CAP = 4096;
/**
 * The files DnsServiceImpl reads first, in this order: asked for together with
 * the spawn, so the relay reads both as soon as it runs, without a round trip
 * between them (netrelay answers requests in order).
 */
const PREFETCH = ['/etc/hosts', '/etc/resolv.conf'] as const;

type FileReply = { ok: true; text: string } | { ok: false; errno: string };

/** A RelayTransport whose first reads of PREFETCH come from the replies already asked for. */
class PrefetchedRelayTransport extends RelayTransport {
  constructor(input: NodeJS.WritableStream, output: NodeJS.ReadableStream, private readonly early: Map<string, Promise<FileReply>>) {
    super(input, output);
  }

  override readFile(path: string): Promise<FileReply> {
    const reply = this.early.get(path);
    if (!reply) return super.readFile(path);
    this.early.delete(path);
    return reply;
  }
}

function fileRequest(path: string): Buffer {
  const body = Buffer.concat([Buffer.from('F'), Buffer.from(path, 'utf8')]);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length, 0);
  return Buffer.concat([head, body]);
}

/**
 * The first n reply frames of the relay's stdout, as promises; everything after
 * them goes on to `rest` (the transport's output), as does its end or error.
 */
function takeReplies(src: Readable, n: number, rest: PassThrough, stopped: () => boolean): Promise<FileReply>[] {
  const waiters: Array<{ resolve: (r: FileReply) => void; reject: (e: Error) => void }> = [];
  const replies = Array.from({ length: n }, () => new Promise<FileReply>((resolve, reject) => waiters.push({ resolve, reject })));
  for (const r of replies) r.catch(() => undefined); // a reply nobody asks for may fail unobserved
  let taken = 0;
  let buf = Buffer.alloc(0);
  const failRest = (err: Error) => {
    for (; taken < n; taken++) waiters[taken]!.reject(err);
  };
  src.on('data', (chunk: Buffer) => {
    if (taken >= n) {
      rest.write(chunk);
      return;
    }
    buf = Buffer.concat([buf, chunk]);
    while (taken < n && buf.length >= 4) {
      const len = buf.readUInt32BE(0);
      if (len < 1 || len > RELAY_MAX_FILE + 1) {
        const err = new BrokerError('E_PROTOCOL', `relay sent a frame of ${len} bytes`);
        failRest(err);
        rest.destroy(err);
        return;
      }
      if (buf.length < 4 + len) break;
      const status = buf[4]!;
      const text = buf.subarray(5, 4 + len).toString('utf8');
      waiters[taken++]!.resolve(status === 0 ? { ok: true, text } : { ok: false, errno: errnoName(status) });
      buf = buf.subarray(4 + len);
    }
    if (taken >= n && buf.length > 0) {
      rest.write(buf);
      buf = Buffer.alloc(0);
    }
  });
  src.once('end', () => {
    if (stopped()) return; // the normal end: nobody waits, and an error (with its stack) would be wasted
    if (taken < n) failRest(new BrokerError('E_SPAWN', 'the in-container relay exited'));
    rest.end();
  });
  src.once('error', (err: Error) => {
    failRest(err);
    rest.destroy(err);
  });
  return replies;
}

/**
 * The relay as a zygote builtin (the default): the zygote forks a child of
 * the context's init that runs netrelay without exec, and streams the relay's
 * stdin and stdout through its pipe protocol ("stdin" frames, "stdout"
 * events). No process is exec'd per upcall, and with the zygote's context
 * cache the context is not captured again for every upcall.
 */
@injectable()
export class ZygoteRelayLauncher implements RelayLauncher {
  constructor(@inject(UpcallRunner) private readonly runner: UpcallRunner) {}

  async start(context: Context): Promise<RunningRelay> {
    const held = context.namespaces;
    if (context.state !== 'live' || held === null) throw new BrokerError('E_INIT_EXITED', `the init of context ${context.id} has exited`);
    const session = this.runner.open({
      stdin: Buffer.concat(PREFETCH.map(fileRequest)), // with the spawn frame: the relay reads both at once
      target: { initPid: context.initPid, initStartTime: context.initStartTime, pidnsIno: context.pidnsId.ino, host: held.host },
      mode: 'builtin',
      builtin: 'netrelay',
      argv: [],
      timeoutMs: RELAY_TIMEOUT_MS,
      outputCap: RELAY_STDERR_CAP,
    });
    const rest = new PassThrough();
    rest.on('error', () => undefined); // the transport listens; nothing else needs to
    let stopped = false;
    const replies = takeReplies(session.stdout, PREFETCH.length, rest, () => stopped);
    const early = new Map<string, Promise<FileReply>>(PREFETCH.map((path, i) => [path, replies[i]!]));
    return {
      transport: new PrefetchedRelayTransport(session.stdin, rest, early),
      stop: () => {
        stopped = true;
        void session.close(2000);
        return Promise.resolve();
      },
    };
  }
}

/**
 * The first version, kept for comparison (bench/): the one-shot spawner's
 * builtin mode, one exec of build/Release/upcall-spawner per upcall. The child
 * enters the context and runs native code (no exec: no host path ever runs
 * inside the container), speaking the netrelay protocol on its stdin/stdout.
 */
@injectable()
export class SpawnerRelayLauncher implements RelayLauncher {
  constructor(@inject(Spawner) private readonly spawner: Spawner, @inject(Libc) private readonly libc: Libc) {}

  async start(context: Context): Promise<RunningRelay> {
    const held = context.namespaces;
    if (context.state !== 'live' || held === null) throw new BrokerError('E_INIT_EXITED', `the init of context ${context.id} has exited`);
    // A host context relays from the broker's own namespaces (mask 0), as keyutils would resolve.
    using self = held.host ? Pidfd.open(this.libc, process.pid) : null;
    const { child, failure } = this.spawner.start({ target: self ?? held.init, argv: ['netrelay'], builtin: true, stdio: ['pipe', 'pipe', 'pipe'] });
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    // A relay that dies makes writes fail with EPIPE: that must end this upcall, never the broker.
    child.stdin!.on('error', (err) => child.stdout?.emit('error', err));
    child.once('error', (err) => child.stdout?.emit('error', err));
    failure.then((err) => { if (err) child.stdout?.emit('error', err); }, () => undefined);
    return { transport: new RelayTransport(child.stdin!, child.stdout!), stop: () => stopChild(child, exited) };
  }
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  child.stdin?.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
  await exited;
  clearTimeout(timer);
}
