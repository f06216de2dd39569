import type { Command } from 'commander';
import { BrokerClient, DEFAULT_ADMIN_SOCKET } from '../client/broker-client.js';
import { BrokerError } from '../common/errors.js';
import type { RegistrationInfo } from '../common/types.js';
import { printResult, reportError } from './output.js';

interface MountOptions {
  socket?: string;
  json?: boolean;
  forPid: string;
  types: string;
  options?: string;
  timeoutMs?: string;
}

const positive = (what: string, v: string): number => {
  if (!/^\d+$/.test(v) || Number(v) <= 0) throw new BrokerError('E_BAD_REQUEST', `${what} must be a positive integer: ${v}`);
  return Number(v);
};

/**
 * `mount --for-pid`: an agent (a CSI node plugin, a runtime hook) mounts for a
 * container. The broker runs mount(8) in the container's mount and network
 * namespaces and registers the mount for its context (docs/walk-rule.md, case 9).
 */
export function addMountCommand(program: Command): void {
  program.command('mount <source> <mountpoint>')
    .description('(host root, admin socket) mount SOURCE on MOUNTPOINT for the container of PID, and register it')
    .option('-s, --socket <path>', `the broker's admin socket (default ${DEFAULT_ADMIN_SOCKET})`)
    .requiredOption('-p, --for-pid <pid>', 'a process of the container (its mount and network namespaces; the walk rule finds its context)')
    .requiredOption('-t, --types <type>', 'filesystem type (cifs, nfs, nfs4, ...)')
    .option('-o, --options <opts>', 'mount options, as mount(8) takes them')
    .option('-T, --timeout-ms <ms>', 'kill the mount helper after this long (default 60000)')
    .option('-j, --json', 'print the registration as JSON')
    .action(async (source: string, mountpoint: string, opts: MountOptions) => {
      let client: BrokerClient | undefined;
      try {
        const params: Record<string, unknown> = { pid: positive('--for-pid', opts.forPid), fstype: opts.types, source, mountpoint };
        if (opts.options !== undefined) params['options'] = opts.options;
        if (opts.timeoutMs !== undefined) params['timeoutMs'] = positive('--timeout-ms', opts.timeoutMs);
        client = await BrokerClient.connect(opts.socket ?? DEFAULT_ADMIN_SOCKET);
        const r = await client.request<RegistrationInfo>('mount-for', params);
        printResult(opts.json === true, r, () => `${r.id}: ${r.source ?? source} on ${r.mountpoint} (${r.fstype ?? opts.types}) for context ${r.context.id}, init pid ${r.context.initPid}`);
        process.exitCode = 0;
      } catch (err) {
        process.exitCode = reportError(opts.json === true, err);
      } finally {
        client?.close();
      }
    });
}
