import type { ChildProcess } from 'node:child_process';
import { inject, injectable } from 'inversify';
import type { Context } from '../../broker/context-table.js';
import { BrokerError } from '../../common/errors.js';
import { Libc } from '../../ns/libc.js';
import { Pidfd } from '../../ns/pidfd.js';
import { Spawner } from '../native-spawner.js';
import { RelayTransport } from './relay-transport.js';

export interface RunningRelay {
  transport: RelayTransport;
  /** Kill the relay (and anything it started); resolves when it is gone. */
  stop(): Promise<void>;
}

/** Starts the netrelay builtin as a child of a context's init. */
export const RelayLauncher = Symbol('RelayLauncher');
export interface RelayLauncher {
  start(context: Context): Promise<RunningRelay>;
}

/**
 * The relay through the spawner's builtin mode: the child enters the context
 * and runs native code (no exec: no host path ever runs inside the container),
 * speaking the netrelay protocol on its stdin/stdout.
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
