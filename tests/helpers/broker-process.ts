import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/common/paths.js';
import { scaled } from '../testbed/time-scale.js';

export const CLI = join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the built CLI as a user would and collect what it prints. */
export function runCli(args: string[], options: { timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? scaled(60_000));
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function isCrashLine(l: string): boolean {
  return !l.startsWith('{') && /Error\b|Unhandled|^\s+at |^Node\.js v/.test(l);
}

/** A real broker process (`upcall-broker serve`) on sockets in a private temp dir. */
export class BrokerProcess {
  readonly dir: string;
  readonly adminSocket: string;
  readonly tenantSocket: string;
  readonly stateDir: string;
  private child: ChildProcess | null = null;
  /** The broker's stdout and stderr (its JSON log, any crash), the last `keepOutputBytes` of it. */
  output = '';
  private readonly keepOutputBytes: number;
  private readonly crashes: string[] = [];

  /**
   * `keepOutputBytes`: how much of the output to keep (default: all of it). A soak running
   * for an hour sets a bound; crash lines are kept whatever the bound.
   */
  constructor(options: { keepOutputBytes?: number } = {}) {
    this.keepOutputBytes = options.keepOutputBytes ?? Infinity;
    this.dir = mkdtempSync(join(tmpdir(), 'ub-broker-'));
    chmodSync(this.dir, 0o755); // containers reach the tenant socket through this dir
    this.adminSocket = join(this.dir, 'broker.sock');
    this.tenantSocket = join(this.dir, 'tenant.sock');
    this.stateDir = join(this.dir, 'state');
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** `wrapper`: argv the broker command is appended to (e.g. a `keyctl session` that plants a key). */
  async start(extra: string[] = [], wrapper: string[] = []): Promise<void> {
    const args = [CLI, 'serve', '--socket', this.adminSocket, '--tenant-socket', this.tenantSocket,
      '--state-dir', this.stateDir, '--log-level', 'debug', ...extra];
    // UB_BROKER_NODE_ARGS: node options for the broker only (bench/: --cpu-prof, --trace-gc, heap sizes).
    const nodeArgs = (process.env.UB_BROKER_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
    const [cmd, ...cmdArgs] = [...wrapper, process.execPath, ...nodeArgs, ...args];
    const child = spawn(cmd!, cmdArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`broker not ready in ${scaled(15)} s:\n${this.output}`)), scaled(15_000));
      // Only until ready is the output searched, and only this start's (a restart must see its own
      // ready line): searching all of it for every chunk made a long-running bench's client spend
      // a whole core on a broker logging 1,000 lines a second.
      let sinceStart: string | null = '';
      const watch = (stream: NodeJS.ReadableStream) => {
        let partial = '';
        stream.on('data', (b: Buffer) => {
          const text = b.toString();
          this.append(text);
          const lines = (partial + text).split('\n');
          partial = lines.pop()!;
          for (const l of lines) if (isCrashLine(l)) this.crashes.push(l);
          if (sinceStart !== null) {
            sinceStart += text;
            if (/"message":"ready"/.test(sinceStart)) {
              sinceStart = null;
              clearTimeout(timer);
              resolve();
            }
          }
        });
        stream.once('end', () => {
          if (isCrashLine(partial)) this.crashes.push(partial);
        });
      };
      watch(child.stdout!);
      watch(child.stderr!);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`broker exited with ${code} before ready:\n${this.output}`));
      });
    });
  }

  private append(text: string): void {
    this.output += text;
    if (this.output.length > 2 * this.keepOutputBytes) {
      const cut = this.output.length - this.keepOutputBytes;
      this.output = this.output.slice(this.output.indexOf('\n', cut) + 1 || cut);
    }
  }

  /** Lines of the broker's output that say it crashed (not its JSON log): a stack, an unhandled error. */
  crashLines(): string[] {
    return [...this.crashes];
  }

  /** Send a signal and wait for the exit; returns the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }

  /** Stop (if running) and remove everything under the temp dir. */
  async dispose(): Promise<void> {
    await this.stop('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}
