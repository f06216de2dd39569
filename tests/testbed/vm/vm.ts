/**
 * One namespace test VM: QEMU boots a Debian kernel (kernels.ts) with this
 * machine's root shared read-only over virtio-9p under a tmpfs overlay, runs one
 * command as root in the checkout's directory, streams its stdout and stderr, and
 * returns its exit status. No network device (`-nic none`): the guest's only
 * networks are the namespaces its tests create. Time-bounded; leaves nothing
 * behind but the kernel images under build/vm/kernels.
 *
 * Exit statuses besides the command's own: 124 the time bound ran out, 125 the VM
 * failed before the command could report (boot failure, qemu error; the kernel
 * console is printed to stderr then).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { kernelImage, VM_DIR } from './kernels.js';

export const VM_TIMEOUT_STATUS = 124;
export const VM_FAILURE_STATUS = 125;
const GUEST_INIT = join(VM_DIR, '..', '..', 'tests', 'testbed', 'vm', 'guest-init.sh');

export interface VmOptions {
  kernel: string;
  argv: string[];
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
  stdout?: Writable;
  stderr?: Writable;
  /** Files the command leaves in $UB_VM_RUN_DIR are copied here before the run dir is removed. */
  keepRunDir?: (dir: string) => void;
  memoryMiB?: number;
  cpus?: number;
}

export interface VmResult {
  status: number;
  release: string;
  bootToCommandMs: number | null;
  durationMs: number;
}

/** Variables passed from the host to the command unless overridden. */
const PASSED_ENV = ['CI', 'NODE_OPTIONS', 'UB_KERNEL_COMPAT', 'UB_KERNEL_PATH_SITE', 'UB_TEST_TIME_SCALE'];

export async function runInVm(options: VmOptions): Promise<VmResult> {
  const image = kernelImage(options.kernel);
  mkdirSync(join(VM_DIR, 'runs'), { recursive: true });
  const run = mkdtempSync(join(VM_DIR, 'runs', 'run-'));
  const started = Date.now();
  const env: Record<string, string> = {};
  for (const k of PASSED_ENV) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  Object.assign(env, options.env, { UB_VM_RUN_DIR: run });
  writeFileSync(join(run, 'command'), options.argv.map((a) => `${a}\0`).join(''));
  writeFileSync(join(run, 'cwd'), options.cwd ?? process.cwd());
  writeFileSync(join(run, 'env'), Object.entries(env).map(([k, v]) => `${k}=${v}\0`).join(''));
  const args = [
    '-accel', 'tcg,thread=multi', '-cpu', 'max', '-m', String(options.memoryMiB ?? 4096), '-smp', String(options.cpus ?? 2),
    '-nographic', '-monitor', 'none', '-no-reboot', '-nic', 'none',
    '-kernel', image.vmlinuz, '-initrd', image.initrd,
    '-append', `console=ttyS0 panic=-1 quiet loglevel=4 ub.run=${run} ub.init=${GUEST_INIT}`,
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-virtfs', `local,path=${run},mount_tag=ubrun,security_model=none`,
    '-virtfs', `local,path=${image.modules},mount_tag=ubmods,security_model=none,readonly=on`,
    '-serial', `file:${join(run, 'console.log')}`,
    '-chardev', `socket,id=out,path=${join(run, 'out.sock')},server=on,wait=on`, '-serial', 'chardev:out',
    '-chardev', `socket,id=err,path=${join(run, 'err.sock')},server=on,wait=on`, '-serial', 'chardev:err',
  ];
  const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let qemuErr = '';
  qemu.stderr!.on('data', (b: Buffer) => (qemuErr += b.toString()));
  const exited = once(qemu, 'close');
  const stop = () => qemu.kill('SIGKILL');
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const onSignal = (sig: NodeJS.Signals) => {
    stop();
    rmSync(run, { recursive: true, force: true });
    process.kill(process.pid, sig);
  };
  for (const s of signals) process.once(s, onSignal);
  process.once('exit', stop);
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; stop(); }, options.timeoutMs ?? 30 * 60_000);
  let firstByte: number | null = null;
  try {
    // qemu waits (wait=on) until both serial sockets are connected: no output is lost.
    const sockets = await Promise.all([attach(join(run, 'out.sock'), exited), attach(join(run, 'err.sock'), exited)]);
    const [out, err] = sockets;
    const mark = () => { if (firstByte === null) firstByte = Date.now(); };
    if (out) { out.on('data', mark); out.pipe(options.stdout ?? process.stdout, { end: false }); }
    if (err) { err.on('data', mark); err.pipe(options.stderr ?? process.stderr, { end: false }); }
    await exited;
    await Promise.all(sockets.map((s) => (s && !s.closed ? once(s, 'close') : null)));
    const statusFile = join(run, 'status');
    let status: number;
    if (timedOut) status = VM_TIMEOUT_STATUS;
    else if (existsSync(statusFile)) status = Number(readFileSync(statusFile, 'utf8').trim());
    else status = VM_FAILURE_STATUS;
    if (status === VM_FAILURE_STATUS || timedOut) {
      const console = existsSync(join(run, 'console.log')) ? readFileSync(join(run, 'console.log'), 'utf8') : '';
      (options.stderr ?? process.stderr).write(`vm: ${timedOut ? 'timed out' : 'the guest did not report a status'}; qemu: ${qemuErr.trim()}\nvm: kernel console (last 3000 chars):\n${console.slice(-3000)}\n`);
    }
    options.keepRunDir?.(run);
    return { status, release: image.release, bootToCommandMs: firstByte === null ? null : firstByte - started, durationMs: Date.now() - started };
  } finally {
    clearTimeout(timer);
    stop();
    await exited.catch(() => undefined);
    for (const s of signals) process.off(s, onSignal);
    process.off('exit', stop);
    rmSync(run, { recursive: true, force: true });
  }
}

/** Connect to one of qemu's serial sockets once it exists; null if qemu exits first. */
async function attach(path: string, exited: Promise<unknown>): Promise<Socket | null> {
  let gone = false;
  void exited.then(() => (gone = true));
  while (!gone) {
    if (existsSync(path)) {
      const sock = connect(path);
      try {
        await once(sock, 'connect');
        return sock;
      } catch {
        sock.destroy();
      }
    }
    await sleep(20);
  }
  return null;
}
