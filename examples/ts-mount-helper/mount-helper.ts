#!/usr/bin/env node
/**
 * Example filesystem helper in TypeScript: mount a tmpfs, then register it with
 * the broker so later upcalls for it run in this container. Usage (inside a
 * container whose runtime bind-mounted the tenant socket):
 *
 *   node dist/examples/ts-mount-helper/mount-helper.js [--socket PATH] MOUNTPOINT
 *
 * If registration fails the mount is undone: nothing is left half-done.
 */
import { spawnSync } from 'node:child_process';
import { BrokerClient, BrokerError } from '../../src/index.js';

async function main(argv: string[]): Promise<number> {
  const socketAt = argv.indexOf('--socket');
  const socket = socketAt >= 0 ? argv[socketAt + 1] : '/run/upcall-broker/tenant.sock';
  const mountpoint = argv.filter((_, i) => i !== socketAt && i !== socketAt + 1)[0];
  if (!mountpoint?.startsWith('/')) {
    process.stderr.write('usage: mount-helper [--socket PATH] /ABSOLUTE/MOUNTPOINT\n');
    return 1;
  }
  const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'ts-helper', mountpoint], { stdio: 'inherit' });
  if (mount.status !== 0) return 2;
  try {
    const client = await BrokerClient.connect(socket);
    try {
      const reg = await client.register(mountpoint, { fstype: 'tmpfs', source: 'ts-helper' });
      process.stdout.write(`${reg.id}\n`);
      return 0;
    } finally {
      client.close();
    }
  } catch (err) {
    spawnSync('umount', [mountpoint], { stdio: 'inherit' });
    const e = BrokerError.from(err);
    process.stderr.write(`mount-helper: ${e.code}: ${e.message}\n`);
    return 3;
  }
}

process.exitCode = await main(process.argv.slice(2));
