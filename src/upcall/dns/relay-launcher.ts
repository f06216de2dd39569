import type { ChildProcess } from 'node:child_process';
import { inject, injectable } from 'inversify';
import { Libc } from '../../ns/libc.js';
import { Pidfd } from '../../ns/pidfd.js';
import { Spawner } from '../native-spawner.js';
import { UpcallRunner } from '../api/upcall-runner.js';
import { liveTarget, type UpcallContext } from '../api/upcall-context.js';
import { RelayLauncher, type RunningRelay } from '../api/relay-launcher.js';
import { fileRequests, RelayTransport } from './relay-transport.js';

export { RelayLauncher, type RunningRelay } from '../api/relay-launcher.js';

/**
 * The zygote's bound on a relay: past DnsServiceImpl's own 60 s deadline, so
 * the zygote's timeout only ever catches a relay nobody stopped.
 */
const RELAY_TIMEOUT_MS = 65_000;
/** What the relay may print on stderr (it prints nothing; kept for diagnostics). */
const RELAY_STDERR_CAP = 4096;
/**
 * The files DnsServiceImpl reads first: asked for together with the spawn, so
 * the relay reads both as soon as it runs, without a round trip between them.
 */
export const PREFETCH = ['/etc/hosts', '/etc/resolv.conf'] as const;

/**
 * The relay as a zygote builtin (the default): the zygote forks a child of
 * the context's init that runs netrelay without exec. Its stdin and stdout
 * are one end of a socketpair the broker made (a socket session: the spawn
 * frame names the end, the zygote takes it with pidfd_getfd), so the relay's
 * frames go straight between it and the broker, not through the zygote's
 * pipe protocol; the zygote still accounts for the child (its exit, its
 * timeout, kill). No process is exec'd per upcall, and with the zygote's
 * context cache the context is not captured again for every upcall.
 */
@injectable()
export class ZygoteRelayLauncher implements RelayLauncher {
  constructor(@inject(UpcallRunner) private readonly runner: UpcallRunner) {}

  async start(context: UpcallContext): Promise<RunningRelay> {
    const target = liveTarget(context);
    const session = this.runner.open({
      stdin: fileRequests(PREFETCH), // on the socket with the spawn: the relay reads both at once
      socket: true,
      target,
      mode: 'builtin',
      builtin: 'netrelay',
      argv: [],
      timeoutMs: RELAY_TIMEOUT_MS,
      outputCap: RELAY_STDERR_CAP,
    });
    return {
      transport: new RelayTransport(session.stdin, session.stdout, PREFETCH),
      park: (idle) => session.setIdle(idle),
      stop: () => {
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

  async start(context: UpcallContext): Promise<RunningRelay> {
    const { host, init } = liveTarget(context);
    // A host context relays from the broker's own namespaces (mask 0), as keyutils would resolve.
    using self = host ? Pidfd.open(this.libc, process.pid) : null;
    const { child, failure } = this.spawner.start({ target: self ?? init, argv: ['netrelay'], builtin: true, stdio: ['pipe', 'pipe', 'pipe'] });
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    // A relay that dies makes writes fail with EPIPE: that must end this upcall, never the broker.
    child.stdin!.on('error', (err) => child.stdout?.emit('error', err));
    child.once('error', (err) => child.stdout?.emit('error', err));
    failure.then((err) => { if (err) child.stdout?.emit('error', err); }, () => undefined);
    const transport = new RelayTransport(child.stdin!, child.stdout!);
    transport.prefetch(PREFETCH);
    return { transport, park: () => undefined, stop: () => stopChild(child, exited) };
  }
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  child.stdin?.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
  await exited;
  clearTimeout(timer);
}
