/**
 * A shell that runs one command per request and times it itself, with bash's
 * $EPOCHREALTIME (no fork to read the clock): on the host, or inside a
 * container through nsenter. The pipe round trip to it is not in the figure,
 * so a command run inside a container and one run on the host are timed the
 * same way.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

const LOOP = String.raw`
while IFS= read -r line; do
  eval "set -- $line"
  t0=$EPOCHREALTIME
  "$@" >/dev/null 2>&1
  rc=$?
  t1=$EPOCHREALTIME
  echo "$rc $t0 $t1"
done`;

const ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C', HOME: '/' };

export interface AgentResult {
  code: number;
  ms: number;
  /** When the command returned, wall clock (bash's $EPOCHREALTIME), in ms since the epoch. */
  endMs: number;
}

export class ShellAgent {
  private readonly child: ChildProcess;
  private readonly lines: string[] = [];
  private waiter: { resolve: (line: string) => void; reject: (err: Error) => void } | null = null;
  private readonly exited: Promise<void>;

  /**
   * initPid null: on the host; else inside that container (every namespace of its pid 1, as its root).
   * `only`: just these namespaces of it (e.g. net and mount, as a mounting agent enters them), keeping
   * the host's user namespace and credentials.
   */
  constructor(initPid: number | null, only?: ReadonlyArray<'net' | 'mount'>) {
    const enter = only === undefined ? ['--all', '--wdns=/'] : [...only.map((ns) => `--${ns}`), ...(only.includes('mount') ? ['--wdns=/'] : [])];
    const shell = ['bash', '--norc', '--noprofile', '-c', LOOP];
    const argv = initPid === null ? shell : ['nsenter', '--target', String(initPid), ...enter, '--', ...shell];
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'], env: ENV });
    this.exited = new Promise((resolve) => this.child.once('close', () => {
      this.waiter?.reject(new Error('bench agent exited'));
      this.waiter = null;
      resolve();
    }));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const w = this.waiter;
      this.waiter = null;
      if (w) w.resolve(line);
      else this.lines.push(line);
    });
  }

  /** Run argv (each word quoted for bash); its exit status and its duration in ms. */
  run(argv: readonly string[]): Promise<AgentResult> {
    const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
    this.child.stdin!.write(`${argv.map(q).join(' ')}\n`);
    return new Promise<string>((resolve, reject) => {
      const queued = this.lines.shift();
      if (queued !== undefined) return resolve(queued);
      this.waiter = { resolve, reject };
    }).then((line) => {
      const [rc, t0, t1] = line.split(' ');
      return { code: Number(rc), ms: (Number(t1) - Number(t0)) * 1000, endMs: Number(t1) * 1000 };
    });
  }

  async close(): Promise<void> {
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}
