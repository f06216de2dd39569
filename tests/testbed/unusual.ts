/**
 * An "unusual init": a container whose pid 1 runs with settings that differ
 * from everything a process entering the container from outside would have
 * by default. A real child of such an init inherits all of them, so a probe
 * run as that child is the ground truth a spawner that claims to start
 * "a true child of the container's init" must reproduce field by field.
 *
 * Each setting is applied to pid 1 itself, before it execs node and starts
 * serving, by the UNUSUAL_SH stage (scripts.ts) and the exec chain built
 * here (every link execs the next, so pid 1 stays pid 1):
 *
 *   UNUSUAL_SH   chroot mounts, oom_score_adj, umask; waits while the host
 *                moves it into its cgroups (cgroups.ts)
 *   setsid       session and process group leader (runc's init is one too)
 *   keyctl session NAME    own session keyring (runc does the same)
 *   setpriv      no_new_privs, reduced bounding set, inheritable+ambient caps
 *   prlimit      low rlimits
 *   nice         niceness
 *   setarch -R   personality ADDR_NO_RANDOMIZE
 *   ub-seccomp-exec        seccomp filter: one syscall fails with an odd errno
 *   chroot ROOT sh -c 'cd CWD && exec "$@"'   root and cwd unlike the mount ns's
 *   node init.js
 */
import { existsSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/common/paths.js';
import { SECCOMP_EXEC } from '../helpers/fixtures.js';
import { UNUSUAL_SH } from './scripts.js';

export type RlimitName = 'nofile' | 'nproc' | 'core' | 'stack' | 'memlock' | 'msgqueue' | 'sigpending' | 'fsize';
export type SeccompSyscall = 'getcpu' | 'mincore' | 'syslog' | 'openat2';

export interface UnusualInit {
  /** Dropped from the bounding set, as setpriv names them (default net_raw, sys_time). */
  readonly dropBounding?: readonly string[];
  /** The inheritable and ambient sets (default net_bind_service); [] for empty ones. */
  readonly ambient?: readonly string[];
  /** prctl(PR_SET_NO_NEW_PRIVS) (default true). */
  readonly noNewPrivs?: boolean;
  /** The syscall to fail and the errno it fails with; null: no filter. */
  readonly seccomp?: { readonly syscall: SeccompSyscall; readonly errno: string } | null;
  /** Own cgroup in every mounted hierarchy (default true). */
  readonly cgroups?: boolean;
  /** [soft, hard]; replaces the default set (nofile 256:512, nproc 512:512, core 0:0). */
  readonly rlimits?: Readonly<Partial<Record<RlimitName, readonly [number, number]>>>;
  /** Default 345; null leaves it at 0. */
  readonly oomScoreAdj?: number | null;
  /** Default 0o027; null leaves 022. */
  readonly umask?: number | null;
  /** Niceness (default 3); null leaves 0. */
  readonly nice?: number | null;
  /** personality ADDR_NO_RANDOMIZE (default true). */
  readonly noRandomize?: boolean;
  /** Become session and process group leader, as a runtime's init does (default true). */
  readonly sessionLeader?: boolean;
  /**
   * Join a new named session keyring (default `_ses.<container dir name>`,
   * unique per container); null: keep the test runner's.
   */
  readonly sessionKeyring?: string | null;
  /** chroot into a tmpfs that bind-mounts what init needs (default true). */
  readonly chroot?: boolean;
}

/** What was applied, with defaults filled in: tests compare probes against it. */
export interface ResolvedUnusual {
  readonly dropBounding: readonly string[];
  readonly ambient: readonly string[];
  readonly noNewPrivs: boolean;
  readonly seccomp: { readonly syscall: SeccompSyscall; readonly errno: string } | null;
  readonly cgroups: boolean;
  readonly rlimits: Readonly<Partial<Record<RlimitName, readonly [number, number]>>>;
  readonly oomScoreAdj: number | null;
  readonly umask: number | null;
  readonly nice: number | null;
  readonly noRandomize: boolean;
  readonly sessionLeader: boolean;
  readonly sessionKeyring: string | null;
  /** Host-side path of the chroot (a tmpfs visible only in the container's mount ns), or null. */
  readonly chrootDir: string | null;
  /** init's working directory inside its root. */
  readonly initCwd: string;
}

/** The file that exists only in the chroot, never in the mount namespace's root. */
export const CHROOT_MARKER = '/ub-chroot-marker';
/** init's cwd inside the chroot: a real child inherits it, so the probe sees it. */
export const CHROOT_INIT_CWD = '/ub-init-cwd';
export { SECCOMP_EXEC };

const DEFAULT_RLIMITS: ResolvedUnusual['rlimits'] = { nofile: [256, 512], nproc: [512, 512], core: [0, 0] };

export function resolveUnusual(spec: UnusualInit | true, dir: string): ResolvedUnusual {
  const u: UnusualInit = spec === true ? {} : spec;
  const chroot = u.chroot ?? true;
  return {
    dropBounding: u.dropBounding ?? ['net_raw', 'sys_time'],
    ambient: u.ambient ?? ['net_bind_service'],
    noNewPrivs: u.noNewPrivs ?? true,
    seccomp: u.seccomp === undefined ? { syscall: 'getcpu', errno: 'ENOTRECOVERABLE' } : u.seccomp,
    cgroups: u.cgroups ?? true,
    rlimits: u.rlimits ?? DEFAULT_RLIMITS,
    oomScoreAdj: u.oomScoreAdj === undefined ? 345 : u.oomScoreAdj,
    umask: u.umask === undefined ? 0o027 : u.umask,
    nice: u.nice === undefined ? 3 : u.nice,
    noRandomize: u.noRandomize ?? true,
    sessionLeader: u.sessionLeader ?? true,
    sessionKeyring: u.sessionKeyring === undefined ? `_ses.${basename(dir)}` : u.sessionKeyring,
    chrootDir: chroot ? join(dir, 'root') : null,
    initCwd: chroot ? CHROOT_INIT_CWD : '/',
  };
}

/**
 * Host paths bind-mounted into the chroot at the same place: the system,
 * /etc (with the container's hosts and resolv.conf mounted on it), devices,
 * the temp dir that holds the container dir (init writes its children's
 * output there), and the package (node_modules, dist, build/fixtures/ub-probe).
 * Missing ones are skipped by the script; symlinks (usrmerge's /bin -> usr/bin)
 * are recreated as symlinks.
 */
function chrootBinds(): string[] {
  const binds = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc', '/dev', '/sys'];
  binds.push(realpathSync(tmpdir()), PACKAGE_ROOT);
  // Targets of links that lead out of the bound trees (a node outside /usr,
  // a clone whose node_modules is a symlink): bound at their real path.
  const modules = join(PACKAGE_ROOT, 'node_modules');
  const outside = [dirname(realpathSync(process.execPath)), ...(existsSync(modules) ? [realpathSync(modules)] : [])];
  return [...binds, ...outside.filter((p) => !binds.some((b) => p === b || p.startsWith(`${b}/`)))];
}

/** Options of UNUSUAL_SH (scripts.ts), in the order it parses them. */
function unusualShArgs(u: ResolvedUnusual, hold: boolean): string[] {
  const args: string[] = [];
  if (u.chrootDir !== null) {
    args.push('--chroot', u.chrootDir, '--marker', CHROOT_MARKER, '--cwd', u.initCwd);
    for (const b of chrootBinds()) args.push('--bind', b);
  }
  if (u.oomScoreAdj !== null) args.push('--oom-score-adj', String(u.oomScoreAdj));
  if (u.umask !== null) args.push('--umask', u.umask.toString(8).padStart(3, '0'));
  if (hold) args.push('--hold');
  return args;
}

/** The exec chain between UNUSUAL_SH and node (see the file comment). */
function unusualExecChain(u: ResolvedUnusual): string[] {
  const chain: string[] = [];
  // setsid(1) forks when the caller already leads a process group; pid 1
  // does not (it is unshare's child, in the test runner's group), so it
  // calls setsid() in place and stays pid 1.
  if (u.sessionLeader) chain.push('setsid');
  if (u.sessionKeyring !== null) chain.push('keyctl', 'session', u.sessionKeyring);
  const priv: string[] = [];
  if (u.noNewPrivs) priv.push('--no-new-privs');
  if (u.dropBounding.length > 0) priv.push(`--bounding-set=${u.dropBounding.map((c) => `-${c}`).join(',')}`);
  // The inheritable set is set, not added to: STAGE1's `unshare --keep-caps`
  // leaves every cap in it. Ambient needs the cap in inheritable (and permitted).
  const raise = u.ambient.map((c) => `,+${c}`).join('');
  priv.push(`--inh-caps=-all${raise}`);
  if (u.ambient.length > 0) priv.push(`--ambient-caps=${raise.slice(1)}`);
  chain.push('setpriv', ...priv, '--');
  const limits = Object.entries(u.rlimits).map(([k, [soft, hard]]) => `--${k}=${soft}:${hard}`);
  if (limits.length > 0) chain.push('prlimit', ...limits, '--');
  if (u.nice !== null) chain.push('nice', '-n', String(u.nice));
  if (u.noRandomize) chain.push('setarch', '-R');
  if (u.seccomp !== null) chain.push(SECCOMP_EXEC, u.seccomp.syscall, u.seccomp.errno, '--');
  if (u.chrootDir !== null) {
    chain.push('chroot', u.chrootDir, '/bin/sh', '-c', 'cd "$1" && shift && exec "$@"', 'chroot-cd', u.initCwd);
  }
  return chain;
}

/** What INIT_SH execs before node: UNUSUAL_SH with its options, then the chain. */
export function unusualExecPrefix(u: ResolvedUnusual, hold: boolean): string[] {
  return ['/bin/sh', '-c', UNUSUAL_SH, 'unusual', ...unusualShArgs(u, hold), '--', ...unusualExecChain(u)];
}
