import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_ADMIN_SOCKET } from '../client/broker-client.js';
import { BrokerError } from '../common/errors.js';
import { DEFAULT_NATIVE_DIR } from '../common/paths.js';
import {
  DEFAULT_KEY_DNS_RESOLVER, DEFAULT_RULE_FILE, installRuleFile, readRuleFile, type RuleFileSpec, uninstallRuleFile,
} from '../upcall/request-key/rule-file.js';
import { printResult, reportError } from './output.js';

export const DEFAULT_HANDLER = join(DEFAULT_NATIVE_DIR, 'upcall-request-key');

interface InstallOptions {
  socket: string;
  types: string;
  match: string;
  file: string;
  handler: string;
  fallback: string;
  timeoutMs?: string;
  strict?: boolean;
  handlerLog?: string;
  json?: boolean;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** --fallback auto: keyutils' own handler for dns_resolver when it is installed, nothing for other types. */
export function fallbacksFor(types: string[], fallback: string, isExecutable: (p: string) => boolean = executable): Record<string, string | null> {
  return Object.fromEntries(types.map((t) => {
    if (fallback === 'none') return [t, null];
    if (fallback !== 'auto') return [t, fallback];
    return [t, t === 'dns_resolver' && isExecutable(DEFAULT_KEY_DNS_RESOLVER) ? DEFAULT_KEY_DNS_RESOLVER : null];
  }));
}

async function run(json: boolean | undefined, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
    process.exitCode = 0;
  } catch (err) {
    process.exitCode = reportError(json === true, err);
  }
}

export function addRequestKeyCommand(program: Command): void {
  const rk = program.command('request-key')
    .description('route kernel request-key upcalls (dns_resolver, ...) to the broker: a rule file in /etc/request-key.d');

  rk.command('install')
    .description('write (atomically, idempotently) the request-key.d file that runs upcall-request-key for these key types')
    .option('-s, --socket <path>', 'the broker admin socket the handler talks to', DEFAULT_ADMIN_SOCKET)
    .option('-t, --types <list>', 'comma-separated key types', 'dns_resolver')
    .option('-m, --match <pattern>', 'request-key description pattern (one \'*\' at most)', '*')
    .option('-f, --file <path>', 'the rule file', DEFAULT_RULE_FILE)
    .option('--handler <path>', 'the handler executable', DEFAULT_HANDLER)
    .option('--fallback <path|auto|none>', 'run on decline (and for host requesters when the broker is down); auto: /sbin/key.dns_resolver for dns_resolver', 'auto')
    .option('--timeout-ms <n>', 'the handler\'s total time budget (default 3000)')
    .option('--strict', 'run the fallback only when the broker declines, never when it is down')
    .option('--handler-log <path>', 'the handler appends one line per request here (diagnostics)')
    .option('-j, --json', 'print JSON')
    .action((opts: InstallOptions) => run(opts.json, async () => {
      const types = opts.types.split(',').map((t) => t.trim()).filter(Boolean);
      if (opts.fallback !== 'auto' && opts.fallback !== 'none' && !executable(opts.fallback)) {
        throw new BrokerError('E_BAD_REQUEST', `--fallback ${opts.fallback} is not executable`);
      }
      const timeoutMs = opts.timeoutMs === undefined ? null : Number(opts.timeoutMs);
      const spec: RuleFileSpec = {
        handler: opts.handler, socket: opts.socket, types, match: opts.match, fallback: fallbacksFor(types, opts.fallback),
        timeoutMs, strict: opts.strict === true, logFile: opts.handlerLog ?? null,
      };
      const by = `upcall-broker request-key install (uid ${process.getuid?.() ?? '?'}, pid ${process.pid})`;
      const r = await installRuleFile(opts.file, spec, by);
      printResult(opts.json === true, r, () => `${r.changed ? 'installed' : 'unchanged'}: ${r.file}\n${r.lines.join('\n')}`);
    }));

  rk.command('uninstall')
    .description('remove the rule file written by install (a file without its header is left alone)')
    .option('-f, --file <path>', 'the rule file', DEFAULT_RULE_FILE)
    .option('-j, --json', 'print JSON')
    .action((opts: { file: string; json?: boolean }) => run(opts.json, async () => {
      const r = await uninstallRuleFile(opts.file);
      printResult(opts.json === true, r, () => (r.removed ? `removed ${r.file}` : `not installed: ${r.file}`));
    }));

  rk.command('status')
    .description('show the installed rule file and whether the handler is built')
    .option('-f, --file <path>', 'the rule file', DEFAULT_RULE_FILE)
    .option('--handler <path>', 'the handler executable', DEFAULT_HANDLER)
    .option('-j, --json', 'print JSON')
    .action((opts: { file: string; handler: string; json?: boolean }) => run(opts.json, async () => {
      const f = await readRuleFile(opts.file);
      const r = { file: opts.file, installed: f !== null, ours: f?.ours ?? false, lines: f?.lines ?? [],
        handler: { path: opts.handler, executable: executable(opts.handler) } };
      printResult(opts.json === true, r, () => [
        `rule file: ${r.file}: ${!r.installed ? 'not installed' : r.ours ? 'installed' : 'present, NOT written by upcall-broker'}`,
        ...r.lines.map((l) => `  ${l}`),
        `handler:   ${r.handler.path}: ${r.handler.executable ? 'ok' : 'missing (run npm ci)'}`,
      ].join('\n'));
    }));
}
