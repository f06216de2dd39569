import type { Command } from 'commander';
import { BrokerClient, DEFAULT_ADMIN_SOCKET } from '../client/broker-client.js';
import type { RegistrationInfo, StatusInfo } from '../common/types.js';
import { join } from 'node:path';
import { BrokerError } from '../common/errors.js';
import { DEFAULT_NATIVE_DIR } from '../common/paths.js';
import { printResult, reportError, table } from './output.js';

interface CommonOptions {
  socket?: string;
  json?: boolean;
}

/** Run one client action against the broker; errors in the documented form and exit status. */
/** Runs `fn` on a connected client; `check` first, so a bad argument is E_BAD_REQUEST whether or not a broker listens. */
async function withClient(opts: CommonOptions, fn: (c: BrokerClient) => Promise<number | void>, check?: () => void): Promise<void> {
  let client: BrokerClient | undefined;
  try {
    check?.();
    client = await BrokerClient.connect(opts.socket ?? DEFAULT_ADMIN_SOCKET);
    process.exitCode = (await fn(client)) ?? 0;
  } catch (err) {
    process.exitCode = reportError(opts.json === true, err);
  } finally {
    client?.close();
  }
}

function common(cmd: Command): Command {
  return cmd
    .option('-s, --socket <path>', `broker socket, admin or tenant (default ${DEFAULT_ADMIN_SOCKET})`)
    .option('-j, --json', 'print JSON');
}

function describe(r: RegistrationInfo): string {
  return [
    `id:          ${r.id}`,
    `mountpoint:  ${r.mountpoint}`,
    `mount id:    ${r.mountId} (${r.mountIdKind})`,
    `fstype:      ${r.fstype ?? '-'}`,
    `source:      ${r.source ?? '-'}`,
    `mounter:     pid ${r.mounter.pid}, uid ${r.mounter.uid}, gid ${r.mounter.gid}`,
    `created:     ${r.createdAt}`,
    `state:       ${r.state}`,
    `context:     ${r.context.id}: init pid ${r.context.initPid}, pidns ${r.context.pidns}, userns ${r.context.userns}`,
  ].join('\n');
}

export function addClientCommands(program: Command): void {
  common(program.command('register'))
    .description('register a mount for this process\'s container (the broker learns the container from the kernel)')
    .requiredOption('-m, --mount <path>', 'the mountpoint, as this process sees it')
    .option('-t, --fstype <type>', 'filesystem type (default: from mountinfo)')
    .option('-S, --source <source>', 'mount source (default: from mountinfo)')
    .option('-p, --for-pid <pid>', '(host root, admin socket) register for the container of this process, as it sees PATH')
    .action((opts: CommonOptions & { mount: string; fstype?: string; source?: string; forPid?: string }) => {
      const params: Record<string, unknown> = { mountpoint: opts.mount };
      if (opts.fstype !== undefined) params['fstype'] = opts.fstype;
      if (opts.source !== undefined) params['source'] = opts.source;
      return withClient(opts, async (c) => {
        const r = await c.request<RegistrationInfo>(opts.forPid !== undefined ? 'register-for' : 'register', params);
        printResult(opts.json === true, r, () => r.id);
      }, () => {
        if (opts.forPid === undefined) return;
        if (!/^\d+$/.test(opts.forPid) || Number(opts.forPid) <= 0) throw new BrokerError('E_BAD_REQUEST', `--for-pid must be a positive integer: ${opts.forPid}`);
        params['pid'] = Number(opts.forPid);
      });
    });

  common(program.command('unregister <id>'))
    .description('remove a registration')
    .action((id: string, opts: CommonOptions) => withClient(opts, async (c) => {
      const r = await c.request('unregister', { id });
      printResult(opts.json === true, r, () => `removed ${id}`);
    }));

  common(program.command('list'))
    .description('list the registrations this caller may see')
    .action((opts: CommonOptions) => withClient(opts, async (c) => {
      const rs = await c.request<RegistrationInfo[]>('list');
      printResult(opts.json === true, rs, () => table(
        ['ID', 'MOUNTPOINT', 'FSTYPE', 'STATE', 'INIT', 'PIDNS', 'USERNS'],
        rs.map((r) => [r.id, r.mountpoint, r.fstype ?? '-', r.state, String(r.context.initPid), String(r.context.pidns), String(r.context.userns)]),
      ));
    }));

  common(program.command('show <id>'))
    .description('show one registration')
    .action((id: string, opts: CommonOptions) => withClient(opts, async (c) => {
      const r = await c.request<RegistrationInfo>('show', { id });
      printResult(opts.json === true, r, () => describe(r));
    }));

  common(program.command('exec'))
    .description('run CMD as an upcall in a registration\'s container; its output and exit status are ours')
    .requiredOption('-m, --mount <id|path>', 'registration id, or mountpoint')
    .option('-T, --timeout <seconds>', 'kill the whole upcall after this long', '30')
    .option('-t, --tty', 'an interactive terminal where the upcall runs (host root; node-pty)')
    .argument('<cmd...>', 'the program and its arguments, after --')
    .passThroughOptions()
    .action((cmd: string[], opts: CommonOptions & { mount: string; timeout: string; tty?: boolean }) => withClient(opts, async (c) => {
      if (opts.tty === true) return execTty(c, opts.mount, cmd);
      const r = await c.request<{ code: number | null; signal: string | null; stdoutBase64: string; stderrBase64: string }>('exec', {
        mount: opts.mount, argv: cmd, timeoutMs: Math.round(Number(opts.timeout) * 1000),
      });
      if (opts.json === true) {
        printResult(true, r, () => '');
      } else {
        process.stdout.write(Buffer.from(r.stdoutBase64, 'base64'));
        process.stderr.write(Buffer.from(r.stderrBase64, 'base64'));
      }
      return r.code ?? 128 + 9;
    }));
}

interface ResolveJson {
  payloadBase64: string;
  text: string | null;
  expirySeconds: number;
  dnserror: number | null;
  status: string;
  sources: Array<{ address: string; from: string; ttl: number | null }>;
  nameservers: string[];
}

export function addResolveCommand(program: Command): void {
  common(program.command('resolve <description>'))
    .description('a dns_resolver upcall for a registration: resolve DESCRIPTION (name, a:name, aaaa:name, afsdb:cell) inside its container')
    .requiredOption('-m, --mount <id|path>', 'registration id, or mountpoint')
    .option('-c, --callout <opts>', 'callout options, as the kernel passes them (ipv4, ipv6, list, srv=1)', '')
    .option('-r, --raw', 'write the exact payload bytes the kernel would receive')
    .action((description: string, opts: CommonOptions & { mount: string; callout: string; raw?: boolean }) => withClient(opts, async (c) => {
      const r = await c.request<ResolveJson>('resolve', { mount: opts.mount, description, callout: opts.callout });
      if (opts.raw === true) {
        process.stdout.write(Buffer.from(r.payloadBase64, 'base64'));
        return;
      }
      printResult(opts.json === true, r, () => r.dnserror !== null
        ? `${description}: ${r.status} (#dnserror=${r.dnserror}, negative for ${r.expirySeconds} s; nameservers ${r.nameservers.join(', ')})`
        : [`${description}: expires in ${r.expirySeconds} s`, r.text === null ? '(binary AFS server list)' : `payload: ${r.text}`,
          table(['ADDRESS', 'TTL', 'FROM'], r.sources.map((s) => [s.address, s.ttl === null ? '-' : String(s.ttl), s.from]))].join('\n'));
    }));
}


export function addStatusCommand(program: Command): void {
  common(program.command('status'))
    .description('uptime, contexts, registrations, upcall counts and recent failures (host root)')
    .action((opts: CommonOptions) => withClient(opts, async (c) => {
      const s = await c.request<StatusInfo>('status');
      printResult(opts.json === true, s, () => [
        table(['BROKER', 'PID', 'UPTIME', 'CONTEXTS', 'REGISTRATIONS', 'INIT-EXITED'],
          [[s.version, String(s.pid), `${s.uptimeSeconds}s`, String(s.contexts.live), String(s.registrations.total), String(s.registrations.initExited)]]),
        '',
        table(['UPCALLS', 'COUNT'], Object.entries(s.upcalls).map(([k, v]) => [k, String(v)])),
        '',
        s.recentFailures.length === 0 ? 'no recent failures'
          : table(['TIME', 'TYPE', 'CODE', 'MESSAGE'], s.recentFailures.map((f) => [f.time, f.type, f.code, f.message])),
      ].join('\n'));
    }));
}

/**
 * `exec --tty`: an operator's interactive shell exactly where an upcall runs.
 * The CLI (host root) asks the broker which init the registration holds, then
 * runs the spawner itself under a pseudo-terminal (node-pty cannot pass extra
 * fds, so the spawner opens the init by pid and checks its start time and pid
 * namespace: a reused pid is refused).
 */
export async function execTty(client: BrokerClient, mount: string, argv: string[]): Promise<number> {
  const selector = /^r-[0-9a-f]{12}$/.test(mount) ? { id: mount } : /^\d+$/.test(mount) ? { mountId: Number(mount) } : { path: mount };
  const reg = await client.show(selector);
  if (reg.state !== 'live') throw new BrokerError('E_INIT_EXITED', `the init of registration ${reg.id} has exited`);
  const { spawn } = (await import('node-pty')) as typeof import('node-pty');
  const spawner = join(DEFAULT_NATIVE_DIR, 'upcall-spawner');
  const args = ['exec', '--pid', String(reg.context.initPid), '--start-time', String(reg.context.initStartTime),
    '--pidns', String(reg.context.pidns), '--', ...argv];
  const term = spawn(spawner, args, {
    name: process.env['TERM'] ?? 'xterm', cols: process.stdout.columns ?? 80, rows: process.stdout.rows ?? 24, env: {},
  });
  const raw = process.stdin.isTTY === true;
  if (raw) process.stdin.setRawMode(true);
  process.stdin.resume();
  const onInput = (d: Buffer) => term.write(d.toString('binary'));
  process.stdin.on('data', onInput);
  term.onData((d) => process.stdout.write(d));
  const onResize = () => term.resize(process.stdout.columns ?? 80, process.stdout.rows ?? 24);
  process.stdout.on('resize', onResize);
  const code = await new Promise<number>((resolve) => term.onExit(({ exitCode }) => resolve(exitCode)));
  process.stdin.off('data', onInput);
  process.stdout.off('resize', onResize);
  if (raw) process.stdin.setRawMode(false);
  process.stdin.pause();
  return code;
}
