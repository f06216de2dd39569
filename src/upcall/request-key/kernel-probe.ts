/**
 * `doctor` probes for the kernel request-key path.
 *
 * The end-to-end probe leaves nothing behind: a rule file named for this
 * process and a random tag, whose one line matches only `user` keys described
 * "<tag>:*" (no other request on the machine can match it), removed right
 * after the request (and on process exit); the request runs in a fresh
 * anonymous session keyring, which dies with the keyctl process, taking the
 * negative key with it.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_RULE_FILE, HANDLER_MACROS, readRuleFile } from './rule-file.js';

/** The handler is built, and which rule file (if any) routes keys to it. */
export async function handlerStatus(handler: string, ruleFile = DEFAULT_RULE_FILE): Promise<string> {
  accessSync(handler, constants.X_OK);
  const r = spawnSync(handler, ['--version'], { encoding: 'utf8', timeout: 5000 });
  if (r.status !== 0) throw new Error(`${handler} --version failed: ${r.stderr.trim()}`);
  const installed = await readRuleFile(ruleFile);
  const rules = installed === null ? `${ruleFile} not installed (upcall-broker request-key install)`
    : !installed.ours ? `${ruleFile} exists but was not written by upcall-broker`
      : `${ruleFile} routes ${installed.lines.map((l) => l.split('\t')[1]).join(', ')} to the handler`;
  return `${r.stdout.trim()} at ${handler}; ${rules}`;
}

/**
 * The kernel runs our handler for a key request (through /sbin/request-key and
 * a temporary, uniquely matched rule), and what the handler then heard from the
 * broker. Fails only when the kernel path itself is broken.
 */
export function probeKernelPath(opts: { handler: string; socket: string; keyctl?: string; confDir?: string }): string {
  if (process.geteuid?.() !== 0) throw new Error('needs root (writes a temporary rule in /etc/request-key.d)');
  accessSync('/sbin/request-key', constants.X_OK);
  accessSync(opts.handler, constants.X_OK);
  const tag = `ub-doctor-${process.pid}-${randomBytes(4).toString('hex')}`;
  const file = join(opts.confDir ?? '/etc/request-key.d', `${tag}.conf`);
  const dir = mkdtempSync(join(tmpdir(), 'ub-doctor-rk-'));
  const log = join(dir, 'handler.log');
  const remove = () => rmSync(file, { force: true });
  process.once('exit', remove);
  let r: ReturnType<typeof spawnSync>;
  const started = performance.now();
  try {
    // Atomically (a dotfile request-key ignores, then rename): request-key fails every request on the
    // machine with "Syntax error" while it can read a half-written line.
    const tmp = join(opts.confDir ?? '/etc/request-key.d', `.${tag}.tmp`);
    writeFileSync(tmp, `# upcall-broker doctor probe, removed at once\ncreate\tuser\t${tag}:*\t*\t${[
      opts.handler, '--socket', opts.socket, '--timeout-ms', '2000', '--log-file', log, ...HANDLER_MACROS].join(' ')}\n`, { mode: 0o644 });
    try {
      renameSync(tmp, file);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
    r = spawnSync(opts.keyctl ?? 'keyctl', ['session', '-', 'keyctl', 'request2', 'user', `${tag}:probe`, 'doctor', '@s'],
      { encoding: 'utf8', timeout: 10_000 });
  } finally {
    remove();
    process.removeListener('exit', remove);
  }
  const ms = Math.round(performance.now() - started);
  let line = '';
  try {
    line = readFileSync(log, 'utf8').trim().split('\n').at(-1) ?? '';
  } catch {
    // the handler never ran
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (r.error) throw new Error(`keyctl: ${r.error.message}`);
  if (line === '') {
    throw new Error(`the kernel did not run the handler for a test key (keyctl: ${String(r.stderr).trim().split('\n').at(-1) ?? ''})`);
  }
  const outcome = /outcome=(\S+)/.exec(line)?.[1] ?? '?';
  const detail = /detail=(.*)$/.exec(line)?.[1] ?? '';
  const broker = outcome === 'failed' && /broker (unreachable|did not answer|request failed)/.test(detail)
    ? `broker not answering on ${opts.socket} (${detail})`
    : `broker on ${opts.socket} answered: ${outcome}${detail && detail !== '-' ? ` (${detail})` : ''}`;
  return `kernel → /sbin/request-key → handler works (test key, ${ms} ms); ${broker}`;
}
