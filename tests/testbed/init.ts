/**
 * pid 1 of a test container: `node init.js DIR`, exec'd by the setup shell
 * script once mounts, loopback and hostname are in place (see scripts.ts).
 *
 * It starts the container's DNS server, reports "ready", then serves the
 * line protocol of init-protocol.ts. It is written in node rather than sh
 * because a shell cannot both keep reading commands and collect the exit
 * status of background children without blocking; node's child_process
 * gives us genuine children of pid 1 *and* their exit status.
 *
 * Nothing here reaps orphans re-parented to pid 1; they stay zombies until
 * the container is torn down, which is fine for short-lived tests.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { containerFiles, runOutputPaths } from './init-protocol.js';
import type { InitEvent, InitRequest, RunRequest } from './init-protocol.js';
import { scaled } from './time-scale.js';

const DNS_READY_TIMEOUT_MS = scaled(30_000);
/** O_CLOEXEC from asm-generic/fcntl.h; node's fs.constants does not export it. */
const O_CLOEXEC = 0o2000000;

function emit(event: InitEvent): void {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function fatal(message: string): never {
  emit({ ev: 'fatal', message });
  process.exit(1);
}

/**
 * Closes the fds pid 1 inherited by accident. Whatever the test runner's own
 * environment left open without FD_CLOEXEC passes through unshare and the
 * setup stages, and child_process (libuv closes nothing) would hand it on to
 * every child of init. A runtime starts a container's first process with its
 * stdio only; so do we. Node's own fds all carry O_CLOEXEC, which fdinfo's
 * "flags" (octal) shows: that tells them apart from inherited ones.
 */
function closeInheritedFds(): void {
  for (const name of readdirSync('/proc/self/fd')) {
    const fd = Number(name);
    if (fd <= 2) continue;
    let info: string;
    try {
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // readdir's own directory fd, closed by now
    }
    const flags = parseInt(/^flags:\s*([0-7]+)$/m.exec(info)?.[1] ?? '0', 8);
    if ((flags & O_CLOEXEC) === 0) closeSync(fd);
  }
}

/** Starts dns-server.js and resolves with its pid once it prints "ready". */
function startDnsServer(dir: string): Promise<ChildProcess> {
  const files = containerFiles(dir);
  const script = fileURLToPath(new URL('./dns-server.js', import.meta.url));
  const errFd = openSync(files.dnsStderr, 'a');
  const child = spawn(process.execPath, [script, files.dnsConfig, files.dnsLog], {
    stdio: ['ignore', 'pipe', errFd],
  });
  closeSync(errFd);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('DNS server did not become ready')), DNS_READY_TIMEOUT_MS);
    child.once('exit', (code, sig) => {
      // The directory is removed when startup fails, so quote the error here.
      const stderr = readFileSync(files.dnsStderr, 'utf8').trim().split('\n').slice(-3).join(' | ');
      reject(new Error(`DNS server exited early (code ${code}, signal ${sig}): ${stderr}`));
    });
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      if (line === 'ready') resolve(child);
      else reject(new Error(`DNS server said ${JSON.stringify(line)} instead of ready`));
    });
  });
}

/** Runs a request as a direct child of pid 1, output going to files in DIR/run. */
function run(dir: string, req: RunRequest): void {
  const paths = runOutputPaths(dir, req.id);
  const out = openSync(paths.stdout, 'w');
  const err = openSync(paths.stderr, 'w');
  const [file, ...args] = req.argv;
  const child = spawn(file ?? '', args, {
    stdio: ['ignore', out, err],
    env: req.env ? { ...req.env } : process.env,
    // undefined: node does not chdir, so the child has init's cwd.
    cwd: req.inheritCwd ? undefined : (req.cwd ?? '/'),
  });
  closeSync(out);
  closeSync(err);
  child.once('spawn', () => emit({ ev: 'started', id: req.id, pid: child.pid ?? -1 }));
  child.once('error', (e) => emit({ ev: 'error', id: req.id, message: e.message }));
  child.once('exit', (code, signal) => emit({ ev: 'exit', id: req.id, code, signal }));
}

function serve(dir: string): void {
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    let req: InitRequest;
    try {
      req = JSON.parse(line) as InitRequest;
    } catch {
      fatal(`unparseable request ${JSON.stringify(line)}`);
    }
    if (req.op === 'run') run(dir, req);
  });
  // EOF on stdin: the test process is done with us (or died). Exiting pid 1
  // makes the kernel SIGKILL everything else in the pid namespace.
  lines.on('close', () => process.exit(0));
}

async function main(): Promise<void> {
  const dir = process.argv[2];
  if (!dir) fatal('usage: init.js DIR');
  closeInheritedFds();
  const dns = await startDnsServer(dir).catch((e: Error) => fatal(e.message));
  emit({ ev: 'ready', dnsPid: dns.pid ?? -1 });
  serve(dir);
}

await main();
