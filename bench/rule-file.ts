/**
 * A request-key rule file of this bench run: unique name, narrow match (this
 * run's description prefix only), installed with the CLI as an operator
 * would, and removed in finally, on exit and on SIGINT/SIGTERM. A file left
 * by a SIGKILLed run only ever matched that run's names; the tests' sweep
 * (ub-bench-<pid>-<hex>.conf of a dead pid) removes it.
 */
import { randomBytes } from 'node:crypto';
import { unlinkSync, writeFileSync } from 'node:fs';
import { runCli } from '../tests/helpers/broker-process.js';

const live = new Set<string>();
let hooked = false;

function removeAll(): void {
  for (const f of live) {
    try {
      unlinkSync(f);
    } catch {
      // gone already
    }
  }
  live.clear();
}

export class BenchRuleFile {
  readonly path = `/etc/request-key.d/ub-bench-${process.pid}-${randomBytes(4).toString('hex')}.conf`;

  /** Our own lines (e.g. a stock keyutils program), with the header the tests' sweep recognises. */
  static write(lines: string[]): BenchRuleFile {
    BenchRuleFile.hook();
    const f = new BenchRuleFile();
    live.add(f.path);
    writeFileSync(f.path, `# upcall-broker bench rules (pid ${process.pid}); removed when the bench ends\n${lines.join('\n')}\n`, { mode: 0o644 });
    return f;
  }

  private static hook(): void {
    if (!hooked) {
      hooked = true;
      process.on('exit', removeAll);
      for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
        process.once(sig, () => {
          removeAll();
          process.kill(process.pid, sig);
        });
      }
    }
  }

  /** `upcall-broker request-key install` for these types and description pattern. */
  static async install(opts: { socket: string; types: string[]; match: string; extra?: string[] }): Promise<BenchRuleFile> {
    BenchRuleFile.hook();
    const f = new BenchRuleFile();
    live.add(f.path);
    const r = await runCli(['request-key', 'install', '--socket', opts.socket, '--types', opts.types.join(','), '--match', opts.match,
      '--file', f.path, '--fallback', 'none', ...(opts.extra ?? []), '--json']);
    if (r.code !== 0) {
      f.remove();
      throw new Error(`request-key install failed (${r.code}): ${r.stdout}${r.stderr}`);
    }
    return f;
  }

  remove(): void {
    try {
      unlinkSync(this.path);
    } catch {
      // gone already
    }
    live.delete(this.path);
  }
}

/** A prefix no other run (or anything else on this machine) uses in key descriptions. */
export function runPrefix(tag: string): string {
  return `ub${tag}${process.pid}${randomBytes(3).toString('hex')}`;
}
