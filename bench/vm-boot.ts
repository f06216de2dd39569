/**
 * `node dist/bench/vm-boot.js [--kernel 6.1|6.12] [--runs N]`: how long a namespace test
 * VM takes from qemu's start to its first kernel upcall answered inside a container.
 * It runs the README walkthrough (examples/walkthrough/two-containers.sh) in the guest
 * and timestamps, on the host, the lines the guest prints: its first line (the command
 * has started: boot done), the broker's start, and container a's answer (the first
 * request-key upcall, served by the broker through the real kernel). Records a table
 * in bench/RESULTS.md (benchmark vm-boot-<kernel>). Run as root.
 */
import { PassThrough } from 'node:stream';
import { PACKAGE_ROOT } from '../src/common/paths.js';
import { DEFAULT_KERNEL } from '../tests/testbed/vm/kernels.js';
import { runInVm } from '../tests/testbed/vm/vm.js';
import { appendResults } from './harness.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1]! : dflt);
const kernel = opt('--kernel', DEFAULT_KERNEL);
const runs = Number(opt('--runs', '3'));

const MARKS = { command: /^== 1\. start the broker/, ruleInstalled: /^== 3\./, firstUpcall: /^container a: keyctl request2 .* -> \d/ };
type Mark = keyof typeof MARKS;

async function once(): Promise<Record<Mark | 'total', number> & { release: string }> {
  const started = Date.now();
  const seen: Partial<Record<Mark, number>> = {};
  const out = new PassThrough();
  let buf = '';
  out.on('data', (b: Buffer) => {
    buf += b.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const line of lines) {
      for (const [k, re] of Object.entries(MARKS) as [Mark, RegExp][]) if (seen[k] === undefined && re.test(line)) seen[k] = Date.now() - started;
    }
  });
  const r = await runInVm({ kernel, argv: ['bash', 'examples/walkthrough/two-containers.sh'], cwd: PACKAGE_ROOT, stdout: out, stderr: new PassThrough(), timeoutMs: 600_000 });
  if (r.status !== 0 || seen.firstUpcall === undefined) throw new Error(`the walkthrough failed in the guest (exit ${r.status})`);
  return { command: seen.command!, ruleInstalled: seen.ruleInstalled!, firstUpcall: seen.firstUpcall, total: r.durationMs, release: r.release };
}

const rows: string[] = [];
let release = kernel;
for (let i = 0; i < runs; i++) {
  const r = await once();
  release = r.release;
  rows.push(`| ${i + 1} | ${(r.command / 1000).toFixed(1)} | ${(r.ruleInstalled / 1000).toFixed(1)} | ${(r.firstUpcall / 1000).toFixed(1)} | ${(r.total / 1000).toFixed(1)} |`);
  process.stdout.write(`${rows.at(-1)}\n`);
}
const body = [
  `Kernel ${release} under TCG (-accel tcg,thread=multi -cpu max -smp 2 -m 4096); seconds from qemu's start, as the host saw each line:`,
  '',
  '| run | command started (boot) | broker up, rule installed | first upcall answered in a container | VM exited |',
  '|---|---|---|---|---|',
  ...rows,
].join('\n');
appendResults(PACKAGE_ROOT, { benchmark: `vm-boot-${kernel}`, title: `namespace test VM, boot to first upcall (${kernel})`, command: `node dist/bench/vm-boot.js --kernel ${kernel} --runs ${runs}`, body });
