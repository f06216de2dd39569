/**
 * Line protocol between the test process and a container's init (init.ts):
 * one JSON object per line, requests on init's stdin, events on its stdout.
 *
 * The stdin pipe doubles as the container's lifeline: init exits when it
 * reads EOF, and because it is pid 1 the kernel then kills every process in
 * the container's pid namespace. So a test runner that dies, however hard,
 * still takes its containers with it.
 */

/** Ask init to fork+exec argv as its own direct child. */
export interface RunRequest {
  readonly op: 'run';
  readonly id: number;
  readonly argv: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** Working directory of the child (default "/"); ignored with inheritCwd. */
  readonly cwd?: string;
  /** Keep init's own working directory, as a plain fork would. */
  readonly inheritCwd?: boolean;
}

export type InitRequest = RunRequest;

export type InitEvent =
  /** Setup finished and the DNS server is listening; dnsPid is container-relative. */
  | { readonly ev: 'ready'; readonly dnsPid: number }
  /** A run request's child exists; pid is as seen inside the container. */
  | { readonly ev: 'started'; readonly id: number; readonly pid: number }
  | { readonly ev: 'exit'; readonly id: number; readonly code: number | null; readonly signal: string | null }
  /** A run request failed before the child existed (e.g. ENOENT). */
  | { readonly ev: 'error'; readonly id: number; readonly message: string }
  /** Init cannot continue; it exits right after sending this. */
  | { readonly ev: 'fatal'; readonly message: string };

/** Files init writes into the container directory for run request `id`. */
export function runOutputPaths(dir: string, id: number): { stdout: string; stderr: string } {
  return { stdout: `${dir}/run/${id}.out`, stderr: `${dir}/run/${id}.err` };
}

/** Well-known files inside a container's directory (host path == container path). */
export function containerFiles(dir: string): {
  hosts: string;
  resolvConf: string;
  dnsConfig: string;
  dnsLog: string;
  dnsStderr: string;
  runDir: string;
} {
  return {
    hosts: `${dir}/hosts`,
    resolvConf: `${dir}/resolv.conf`,
    dnsConfig: `${dir}/dns.json`,
    dnsLog: `${dir}/dns-queries.jsonl`,
    dnsStderr: `${dir}/dns-server.err`,
    runDir: `${dir}/run`,
  };
}
