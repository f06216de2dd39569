/**
 * `doctor` probe: does the kernel run request-key upcalls for a caller whose
 * credentials are in a non-initial user namespace?
 *
 * Measured (issue 14): Linux 6.18.44 of this machine kind refuses them:
 * request_key(2) after unshare(CLONE_NEWUSER) returns ENOENT at once and
 * /sbin/request-key never starts. Debian's 6.1 and 6.12 start it. So: a child
 * unshares a user namespace (root mapped) and asks for a `user` key whose
 * description no rule matches (a unique tag). A kernel that makes the upcall
 * runs /sbin/request-key, which finds no rule and fails, so the key is negated:
 * ENOKEY. ENOENT means refused. The request runs in a fresh anonymous session
 * keyring that dies with the child, taking the negative key with it; no rule
 * file is written.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';

/** keyctl reports failures with strerror(3) texts; the ones request_key(2) gives. */
const STRERROR_TO_ERRNO: Array<[RegExp, string]> = [
  [/Required key not available/, 'ENOKEY'],
  [/No such file or directory/, 'ENOENT'],
  [/Key was rejected by service/, 'EKEYREJECTED'],
  [/Key has expired/, 'EKEYEXPIRED'],
  [/Key has been revoked/, 'EKEYREVOKED'],
  [/Disk quota exceeded/, 'EDQUOT'],
  [/Operation not permitted/, 'EPERM'],
  [/Permission denied/, 'EACCES'],
  [/Function not implemented/, 'ENOSYS'],
];

export interface UsernsProbeOptions {
  timeoutMs: number;
  /** Registers a function that kills the probe's processes (doctor calls it when the probe ends). */
  track?: (stop: () => void) => void;
  unshare?: string;
  keyctl?: string;
}

export async function probeUsernsRequestKey(opts: UsernsProbeOptions): Promise<string> {
  const keyctl = opts.keyctl ?? '/bin/keyctl';
  accessSync(keyctl, constants.X_OK);
  const tag = `ub-doctor-userns-${process.pid}-${randomBytes(6).toString('hex')}`;
  const started = performance.now();
  const r = await runBounded(opts.unshare ?? 'unshare',
    ['--user', '--map-root-user', '--', keyctl, 'session', '-', keyctl, 'request2', 'user', tag, 'doctor', '@s'], opts);
  const ms = Math.round(performance.now() - started);
  if (r.timedOut) throw new Error(`request_key(2) from a user namespace did not return in ${opts.timeoutMs} ms (killed)`);
  const errno = STRERROR_TO_ERRNO.find(([re]) => re.test(r.stderr))?.[1];
  if (r.code === 0) return `request_key(2) from a user namespace made an upcall: a rule matched the test key and built it (${ms} ms)`;
  if (errno === 'ENOKEY' || errno === 'EKEYREJECTED') {
    return `request_key(2) from a user namespace reached /sbin/request-key: ${errno} from an unmatched test key (${ms} ms)`;
  }
  if (errno === 'ENOENT') {
    throw new Error(`request_key(2) from a user namespace failed with ENOENT in ${ms} ms: the kernel refuses the upcall (/sbin/request-key is not run)`);
  }
  throw new Error(`request_key(2) from a user namespace: ${errno ?? 'unexpected result'} (exit ${r.code}: ${r.stderr.trim().split('\n').at(-1) ?? ''})`);
}

/** Run a command in its own process group; kill the whole group at the deadline. */
function runBounded(cmd: string, args: string[], opts: UsernsProbeOptions): Promise<{ code: number | null; stderr: string; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let stderr = '';
    let timedOut = false;
    const kill = () => {
      try {
        if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    opts.track?.(kill);
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, opts.timeoutMs);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 4096) stderr += d;
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, timedOut });
    });
  });
}
