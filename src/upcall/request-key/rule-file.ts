/**
 * The one file `upcall-broker request-key install` writes under
 * /etc/request-key.d/: a header saying who wrote it, when, and how to remove
 * it, then one request-key.conf line per key type, each running the
 * upcall-request-key handler against the broker's admin socket.
 *
 * request-key reads /etc/request-key.d/*.conf (skipping dotfiles), then
 * /etc/request-key.conf; of the matching lines the least wild wins, ties going
 * to the first read. So `create dns_resolver * * <handler>` here beats the
 * stock `create dns_resolver * * /sbin/key.dns_resolver %k` line.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp, constants as fsc } from 'node:fs';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { BrokerError } from '../../common/errors.js';
import { KEY_TYPE_RE, patternError } from './rules.js';

export const DEFAULT_RULE_FILE = '/etc/request-key.d/upcall-broker.conf';
export const DEFAULT_KEY_DNS_RESOLVER = '/sbin/key.dns_resolver';
/** The first line of every file we write; uninstall refuses files without it. */
export const RULE_FILE_MARKER = '# upcall-broker request-key rules: written by `upcall-broker request-key install`';
/** The handler's positional arguments, in the order upcall-request-key expects them. */
export const HANDLER_MACROS = ['%o', '%k', '%t', '%d', '%c', '%u', '%g', '%T', '%P', '%S'] as const;

export interface RuleFileSpec {
  /** Absolute path of build/Release/upcall-request-key. */
  handler: string;
  /** The broker's admin socket. */
  socket: string;
  /** Key types to route to the broker. */
  types: string[];
  /** request-key pattern for descriptions (default "*"). */
  match: string;
  /** Fallback program per type (absolute path) or null for none. */
  fallback: Record<string, string | null>;
  /** Handler budget (--timeout-ms); null: the handler's default. */
  timeoutMs: number | null;
  /** --strict: the fallback only on decline. */
  strict: boolean;
  /** --log-file for the handler (one line per request), or null. */
  logFile?: string | null;
}

/** A word request-key will pass through unchanged: no whitespace, no leading '%', printable. */
function wordError(what: string, value: string): string | null {
  if (value === '') return `${what} is empty`;
  if (/[\s\0-\x1f\x7f]/.test(value)) return `${what} "${value}" contains whitespace or control characters (request-key splits lines on whitespace)`;
  if (value.startsWith('%')) return `${what} "${value}" starts with '%' (request-key would take it for a macro)`;
  if (value.startsWith('#')) return `${what} "${value}" starts with '#'`;
  return null;
}

export function validateSpec(spec: RuleFileSpec): void {
  const problems: string[] = [];
  for (const [what, path] of [['handler', spec.handler], ['socket', spec.socket]] as const) {
    const e = wordError(what, path) ?? (isAbsolute(path) ? null : `${what} "${path}" is not an absolute path`);
    if (e) problems.push(e);
  }
  if (spec.types.length === 0) problems.push('no key types given');
  for (const t of spec.types) {
    if (!KEY_TYPE_RE.test(t)) problems.push(`"${t}" is not a key type name`);
    if (t.startsWith('.')) problems.push(`"${t}": internal key types cannot be routed`);
  }
  if (new Set(spec.types).size !== spec.types.length) problems.push('a key type is listed twice');
  const pe = patternError(spec.match);
  if (pe) problems.push(`--match: ${pe}`);
  for (const [type, fb] of Object.entries(spec.fallback)) {
    if (fb === null) continue;
    const e = wordError(`fallback for ${type}`, fb) ?? (isAbsolute(fb) ? null : `fallback "${fb}" is not an absolute path`);
    if (e) problems.push(e);
  }
  if (spec.logFile) {
    const e = wordError('handler log', spec.logFile) ?? (isAbsolute(spec.logFile) ? null : `handler log "${spec.logFile}" is not an absolute path`);
    if (e) problems.push(e);
  }
  if (spec.timeoutMs !== null && !(Number.isInteger(spec.timeoutMs) && spec.timeoutMs >= 100 && spec.timeoutMs <= 60_000)) {
    problems.push('--timeout-ms must be an integer in 100..60000');
  }
  if (problems.length > 0) throw new BrokerError('E_BAD_REQUEST', problems.join('; '), { problems });
}

/** The request-key.conf line for one type. */
export function ruleLine(spec: RuleFileSpec, type: string): string {
  const args = [spec.handler, '--socket', spec.socket];
  if (spec.timeoutMs !== null) args.push('--timeout-ms', String(spec.timeoutMs));
  const fb = spec.fallback[type] ?? null;
  if (fb !== null) args.push('--fallback', fb);
  if (spec.strict) args.push('--strict');
  if (spec.logFile) args.push('--log-file', spec.logFile);
  return ['create', type, spec.match, '*', [...args, ...HANDLER_MACROS].join(' ')].join('\t');
}

export function renderRuleFile(spec: RuleFileSpec, meta: { file: string; writtenAt: string; by: string }): string {
  validateSpec(spec);
  return [
    RULE_FILE_MARKER,
    `# Written ${meta.writtenAt} by ${meta.by}.`,
    '# Routes these kernel key requests to the upcall-broker, which builds each key inside the',
    '# container of the process that asked for it (docs/request-key.md).',
    `# Remove with: upcall-broker request-key uninstall --file ${meta.file}`,
    '# (or delete this file: request-key re-reads its configuration on every request).',
    '#',
    '#OP\tTYPE\tDESCRIPTION\tCALLOUT\tPROGRAM ARGS...',
    ...spec.types.map((t) => ruleLine(spec, t)),
    '',
  ].join('\n');
}

/** The lines request-key would act on (no comments or blanks): what makes two files equivalent. */
export function activeLines(content: string): string[] {
  return content.split('\n').filter((l) => l !== '' && !l.startsWith('#') && !/^\s/.test(l));
}

export function isOurs(content: string): boolean {
  return content.split('\n', 1)[0] === RULE_FILE_MARKER;
}

async function readIfExists(path: string): Promise<string | null> {
  try {
    return await fsp.readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new BrokerError('E_IO', `cannot read ${path}: ${(err as Error).message}`, { path });
  }
}

export interface InstallResult {
  file: string;
  changed: boolean;
  lines: string[];
}

function checkFilePath(file: string): void {
  if (!isAbsolute(file)) throw new BrokerError('E_BAD_REQUEST', `--file "${file}" is not an absolute path`);
  const name = basename(file);
  if (!name.endsWith('.conf') || name.startsWith('.')) {
    throw new BrokerError('E_BAD_REQUEST', `--file "${file}": request-key only reads files named *.conf that do not start with '.'`);
  }
}

/**
 * Write the rule file atomically (a dotfile temp in the same directory, which
 * request-key ignores, fsync, rename, fsync the directory) unless the same
 * rules are already there. Refuses to replace a file we did not write.
 */
export async function installRuleFile(file: string, spec: RuleFileSpec, by: string, now = new Date()): Promise<InstallResult> {
  checkFilePath(file);
  const content = renderRuleFile(spec, { file, writtenAt: now.toISOString(), by });
  const lines = activeLines(content);
  const existing = await readIfExists(file);
  if (existing !== null) {
    if (!isOurs(existing)) {
      throw new BrokerError('E_CONFIG', `${file} exists and was not written by upcall-broker; not replacing it`, { file });
    }
    if (JSON.stringify(activeLines(existing)) === JSON.stringify(lines)) return { file, changed: false, lines };
  }
  try {
    await fsp.access(spec.handler, fsc.X_OK);
  } catch {
    throw new BrokerError('E_CONFIG', `the handler ${spec.handler} is not executable (run npm ci to build it)`, { handler: spec.handler });
  }
  const dir = dirname(file);
  await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
  const tmp = join(dir, `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fh = await fsp.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o644);
    try {
      await fh.writeFile(content);
      await fh.chmod(0o644);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
    const dh = await fsp.open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw new BrokerError('E_IO', `cannot write ${file}: ${(err as Error).message}`, { file });
  }
  return { file, changed: true, lines };
}

/** Remove exactly our file; a file without our header is left alone. */
export async function uninstallRuleFile(file: string): Promise<{ file: string; removed: boolean }> {
  checkFilePath(file);
  const existing = await readIfExists(file);
  if (existing === null) return { file, removed: false };
  if (!isOurs(existing)) {
    throw new BrokerError('E_CONFIG', `${file} was not written by upcall-broker (no "${RULE_FILE_MARKER.slice(0, 40)}..." header); not removing it`, { file });
  }
  try {
    await fsp.unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new BrokerError('E_IO', `cannot remove ${file}: ${(err as Error).message}`, { file });
  }
  return { file, removed: true };
}

/** What is installed: our file's active lines, or null. */
export async function readRuleFile(file: string): Promise<{ file: string; ours: boolean; lines: string[] } | null> {
  const existing = await readIfExists(file);
  return existing === null ? null : { file, ours: isOurs(existing), lines: activeLines(existing) };
}
