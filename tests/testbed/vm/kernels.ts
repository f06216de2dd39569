/**
 * Debian kernels for the namespace test VMs, fetched and unpacked once under
 * build/vm/ (never installed on this machine: /boot and /lib/modules stay as they are).
 *
 *   build/vm/kernels/<release>/vmlinuz           the kernel
 *   build/vm/kernels/<release>/lib/modules/...   its modules, with modules.dep (depmod -b)
 *   build/vm/kernels/<release>/initrd.gz         busybox + the modules that mount the root
 *
 * The package is resolved through apt (`apt-cache depends` of the metapackage) and
 * downloaded with `apt-get download`, so a security update of the kernel is picked up
 * by the next build of a fresh checkout.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../../src/common/paths.js';

export const VM_DIR = join(PACKAGE_ROOT, 'build', 'vm');
const SOURCE_DIR = join(PACKAGE_ROOT, 'tests', 'testbed', 'vm');

/** The kernels of the matrix: the name users pass to --kernel, and the Debian 12 metapackage. */
export const KERNELS: Record<string, string> = {
  '6.1': 'linux-image-amd64',
  '6.12': 'linux-image-6.12-amd64',
};
export const DEFAULT_KERNEL = '6.12';

/** What the initramfs loads before it can mount the 9p root and the overlay (dependencies first). */
const ROOT_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay'];

export interface KernelImage {
  release: string;
  vmlinuz: string;
  initrd: string;
  modules: string;
}

function run(cmd: string, args: string[], cwd?: string): string {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** linux-image-amd64 -> linux-image-6.1.0-57-amd64 (the versioned package it depends on). */
function imagePackage(meta: string): string {
  const out = run('apt-cache', ['depends', '--no-recommends', '--no-suggests', meta]);
  const m = /Depends: (linux-image-\S+)/.exec(out);
  if (!m?.[1]) throw new Error(`vm: cannot resolve ${meta} through apt-cache (run apt-get update): ${out.trim()}`);
  return m[1];
}

function imageOf(dir: string, release: string): KernelImage {
  return { release, vmlinuz: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.gz'), modules: join(dir, 'lib', 'modules', release) };
}

/** The kernel for `name` (6.1, 6.12), built once. Concurrent builders each build in a temp dir; the first rename wins. */
export function kernelImage(name: string): KernelImage {
  const meta = KERNELS[name];
  if (!meta) throw new Error(`vm: unknown kernel ${name}; choose one of ${Object.keys(KERNELS).join(', ')}`);
  const linkDir = join(VM_DIR, 'kernels');
  const pkg = imagePackage(meta);
  const release = pkg.replace(/^linux-image-/, '');
  const dir = join(linkDir, release);
  if (existsSync(join(dir, 'initrd.gz'))) return imageOf(dir, release);
  mkdirSync(linkDir, { recursive: true });
  const tmp = mkdtempSync(join(linkDir, `.build-${release}-`));
  try {
    buildInto(tmp, pkg, release);
    try {
      renameSync(tmp, dir);
    } catch (e) {
      if (!existsSync(join(dir, 'initrd.gz'))) throw e;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return imageOf(dir, release);
}

function buildInto(dir: string, pkg: string, release: string): void {
  process.stderr.write(`vm: building ${release} under ${VM_DIR} (once)\n`);
  const debs = join(dir, 'deb');
  mkdirSync(debs);
  chmodSync(debs, 0o777); // apt-get download drops privileges to _apt when it can
  run('apt-get', ['download', '-q', pkg], debs);
  const deb = readdirSync(debs).find((f) => f.endsWith('.deb'));
  if (!deb) throw new Error(`vm: apt-get download ${pkg} left no .deb`);
  run('dpkg-deb', ['-x', join(debs, deb), dir]);
  rmSync(debs, { recursive: true });
  renameSync(join(dir, 'boot', `vmlinuz-${release}`), join(dir, 'vmlinuz'));
  rmSync(join(dir, 'boot'), { recursive: true });
  rmSync(join(dir, 'usr'), { recursive: true, force: true });
  run('depmod', ['-b', dir, release]);
  buildInitramfs(dir, release);
}

/** busybox-static, the root modules (decompressed: busybox insmod reads plain .ko) and /init. */
function buildInitramfs(dir: string, release: string): void {
  const root = mkdtempSync(join(dir, 'initramfs-'));
  try {
    for (const d of ['bin', 'modules', 'proc', 'sys', 'dev', 'lower', 'rw', 'newroot']) mkdirSync(join(root, d));
    copyFileSync('/bin/busybox', join(root, 'bin', 'busybox'));
    chmodSync(join(root, 'bin', 'busybox'), 0o755);
    copyFileSync(join(SOURCE_DIR, 'initramfs-init.sh'), join(root, 'init'));
    chmodSync(join(root, 'init'), 0o755);
    const order: string[] = [];
    for (const mod of ROOT_MODULES) {
      const deps = run('modprobe', ['-d', dir, '-S', release, '--show-depends', mod]);
      for (const line of deps.split('\n')) {
        const path = /^insmod (\S+)/.exec(line)?.[1];
        if (!path) continue; // "builtin virtio_pci" on kernels that build it in
        const name = path.split('/').pop()!.replace(/\.(xz|zst|gz)$/, '');
        if (order.includes(name)) continue;
        const out = join(root, 'modules', name);
        if (path.endsWith('.xz')) writeFileSync(out, execFileSync('xz', ['-dc', path], { maxBuffer: 1 << 28 }));
        else if (path.endsWith('.zst')) writeFileSync(out, execFileSync('zstd', ['-dc', path], { maxBuffer: 1 << 28 }));
        else copyFileSync(path, out);
        order.push(name);
      }
    }
    writeFileSync(join(root, 'modules', 'order'), `${order.join('\n')}\n`);
    execFileSync('sh', ['-c', `cd '${root}' && find . | cpio -o -H newc --quiet | gzip -1 > '${join(dir, 'initrd.gz')}'`]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
