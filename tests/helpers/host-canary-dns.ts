import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/common/paths.js';

/**
 * A DNS server on the HOST's loopback (127.0.0.1:53, host network namespace)
 * that knows no names and logs every query: container upcalls must never reach
 * it. Host-side reference lookups are pointed at it with a private mount
 * namespace, so no test ever sends a query off this machine.
 */
export class HostCanaryDns {
  readonly dir = mkdtempSync(join(tmpdir(), 'ub-canary-'));
  private child: ChildProcess | null = null;

  async start(): Promise<void> {
    const config = join(this.dir, 'dns.json');
    writeFileSync(config, JSON.stringify({ records: [], behaviours: [], listen: ['127.0.0.1'], port: 53 }));
    const child = spawn(process.execPath, [join(PACKAGE_ROOT, 'dist/tests/testbed/dns-server.js'), config, this.logPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
      child.stdout!.on('data', (b: Buffer) => { if (b.toString().includes('ready')) resolve(); });
      child.once('exit', (code) => reject(new Error(`canary DNS exited ${code}: ${err}`)));
    });
  }

  get logPath(): string {
    return join(this.dir, 'queries.jsonl');
  }

  queries(): string[] {
    try {
      return readFileSync(this.logPath, 'utf8').split('\n').filter(Boolean);
    } catch {
      return [];
    }
  }

  /** Run a host-side command whose /etc/resolv.conf names only this server (private mount namespace). */
  hostArgv(argv: string[]): string[] {
    const conf = join(this.dir, 'resolv.conf');
    writeFileSync(conf, 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
    const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
    return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', `mount --bind ${q(conf)} /etc/resolv.conf && exec ${argv.map(q).join(' ')}`];
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (c && c.exitCode === null) {
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await gone;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
