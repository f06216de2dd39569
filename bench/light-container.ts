/**
 * Light containers for the benchmarks: `unshare --user --map-root-user --pid
 * --mount --net --uts --ipc --cgroup --fork --mount-proc`, pid 1 a bash that
 * bind-mounts the container's hosts and resolv.conf, brings lo up, optionally
 * starts the testbed's DNS server on 127.0.0.1:53, and then waits for EOF on
 * its stdin.
 *
 * Why not the testbed's containers: their pid 1 is node, which never reaps
 * orphans, and every upcall is an orphan re-parented to init (that is the
 * point): thousands of upcalls leave thousands of zombies, and this machine's
 * pid_max is 32768. bash reaps any child (waitpid(-1) on SIGCHLD), as a real
 * container init does. The directories use the testbed's layout and naming
 * (tests/testbed/container-dir.ts), so a SIGKILLed run's leftovers are swept
 * by the next Testbed like its own.
 *
 * `unusual: true` gives pid 1 what a runtime's init has and a plain entry
 * lacks: its own cgroup in every hierarchy (the testbed's CgroupSet), a
 * seccomp filter (build/fixtures/ub-seccomp-exec), no_new_privs, lower rlimits,
 * nice 3 and umask 027. Capturing that context is what costs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { SECCOMP_EXEC } from '../tests/helpers/fixtures.js';
import { CgroupSet } from '../tests/testbed/cgroups.js';
import { createDir, defaultResolvConf, removeDir } from '../tests/testbed/container-dir.js';
import { DEFAULT_DNS_CONFIG, type DnsRecord } from '../tests/testbed/dns-types.js';

const DNS_SERVER = fileURLToPath(new URL('../tests/testbed/dns-server.js', import.meta.url));
const ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/', LANG: 'C.UTF-8' };

/** pid 1: $1 the directory, $2 "dns" to start the DNS server, $3 the umask. */
const INIT = String.raw`
set -e
umask "$3"
d=$1
mount --bind "$d/hosts" /etc/hosts
mount --bind "$d/resolv.conf" /etc/resolv.conf
ip link set lo up
if [ "$2" = dns ]; then
  "$UB_NODE" "$UB_DNS_SERVER" "$d/dns.json" "$d/dns-queries.jsonl" > "$d/run/dns.out" 2>> "$d/dns-server.err" &
  for i in $(seq 400); do grep -qx ready "$d/run/dns.out" 2>/dev/null && break; sleep 0.025; done
  grep -qx ready "$d/run/dns.out"
fi
echo ready
while read -r _; do :; done
`;

export interface LightSpec {
  name: string;
  /** Extra /etc/hosts lines. */
  hosts?: string;
  /** Start a DNS server on 127.0.0.1:53 serving these (the container's resolv.conf names it). */
  records?: readonly DnsRecord[];
  unusual?: boolean;
}

export class LightContainer {
  private constructor(
    readonly name: string,
    readonly dir: string,
    readonly initPid: number,
    private readonly proc: ChildProcess,
    private readonly exited: Promise<void>,
    private readonly cgroups: CgroupSet | null,
  ) {}

  static async start(spec: LightSpec): Promise<LightContainer> {
    const dir = await createDir({
      name: spec.name, hosts: spec.hosts ?? '', resolvConf: defaultResolvConf([]),
      dns: { ...DEFAULT_DNS_CONFIG, records: [...(spec.records ?? [])] },
    }, null);
    const prefix = spec.unusual
      ? ['setpriv', '--no-new-privs', '--', 'prlimit', '--nofile=1024:2048', '--core=0:0', '--', 'nice', '-n', '3', '--',
        SECCOMP_EXEC, 'getcpu', 'ENOTRECOVERABLE', '--']
      : [];
    const argv = ['--user', '--map-root-user', '--pid', '--mount', '--net', '--uts', '--ipc', '--cgroup', '--fork', '--mount-proc',
      '--propagation', 'private', ...prefix, 'bash', '--norc', '--noprofile', '-c', INIT, 'init', dir, spec.records ? 'dns' : 'none', spec.unusual ? '027' : '022'];
    let cgroups: CgroupSet | null = null;
    const proc = spawn('unshare', argv, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...ENV, UB_NODE: process.execPath, UB_DNS_SERVER: DNS_SERVER } });
    const exited = new Promise<void>((resolve) => proc.once('close', () => resolve()));
    let stderr = '';
    proc.stderr!.setEncoding('utf8').on('data', (t: string) => (stderr += t));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`light container ${spec.name}: not ready in 20 s: ${stderr}`)), 20_000);
        proc.once('close', (code) => reject(new Error(`light container ${spec.name}: exited ${code}: ${stderr}`)));
        createInterface({ input: proc.stdout! }).once('line', (line) => {
          clearTimeout(timer);
          if (line === 'ready') resolve();
          else reject(new Error(`light container ${spec.name} said ${line}: ${stderr}`));
        });
      });
      const initPid = Number(readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8').trim().split(' ')[0]);
      if (!initPid) throw new Error(`light container ${spec.name}: no pid 1`);
      if (spec.unusual) {
        cgroups = await CgroupSet.create(basename(dir));
        await cgroups.enter(initPid);
      }
      return new LightContainer(spec.name, dir, initPid, proc, exited, cgroups);
    } catch (err) {
      proc.kill('SIGKILL');
      await exited;
      await cgroups?.remove().catch(() => undefined);
      await removeDir(dir);
      throw err;
    }
  }

  /** Run argv inside (nsenter into every namespace of pid 1, as its root); stdout, or throw. */
  exec(argv: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const c = spawn('nsenter', ['--target', String(this.initPid), '--all', '--wdns=/', '--', ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: ENV });
      let stdout = '';
      let stderr = '';
      c.stdout!.setEncoding('utf8').on('data', (t: string) => (stdout += t));
      c.stderr!.setEncoding('utf8').on('data', (t: string) => (stderr += t));
      c.once('error', reject);
      c.once('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  /** EOF to pid 1: it exits, and the kernel takes its pid namespace along. */
  async stop(): Promise<void> {
    this.proc.stdin!.end();
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
    await this.cgroups?.remove().catch(() => undefined);
    await removeDir(this.dir);
  }
}
