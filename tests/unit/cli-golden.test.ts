/**
 * The CLI's stable output against golden files (tests/golden/): `--help` of
 * upcall-broker and of every subcommand (found by walking the help itself, so
 * a new command without a golden file fails), and `--json` errors for
 * representative failures with their exit status. The comparison is exact.
 *
 * After a deliberate change: `npm run golden` (UPDATE_GOLDEN=1) rewrites the
 * files and removes those of commands that are gone; review the diff.
 *
 * Nothing machine-specific may reach a golden file: the CLI runs with an
 * environment of PATH only, output to pipes (help is 80 columns wide), and
 * the package and temp directories are replaced by <package> and <tmp>.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { PACKAGE_ROOT } from '../../src/common/paths.js';

const CLI = join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js');
const GOLDEN = join(PACKAGE_ROOT, 'tests', 'golden');
const UPDATE = process.env['UPDATE_GOLDEN'] === '1';
/** A socket path that exists on no machine: "no broker running", the same everywhere. */
const NO_BROKER = '/nonexistent/upcall-broker.sock';

const tmp = mkdtempSync(join(tmpdir(), 'ub-golden-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** One CLI run as a golden file's text: the command, its exit status, stdout and stderr. */
function transcript(args: string[], cwd = tmp): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }, timeout: 60_000 });
  assert.equal(r.error, undefined, `upcall-broker ${args.join(' ')}: ${r.error}`);
  const text = [`$ upcall-broker ${args.join(' ')}`, `exit status: ${r.status}`, '--- stdout', r.stdout, '--- stderr', r.stderr].join('\n');
  return text.split(PACKAGE_ROOT).join('<package>').split(tmp).join('<tmp>');
}

/** Compare with tests/golden/<name>.txt, or write it under UPDATE_GOLDEN=1. */
function matchGolden(name: string, actual: string): void {
  const file = join(GOLDEN, `${name}.txt`);
  if (UPDATE) {
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, actual);
    return;
  }
  assert.ok(existsSync(file), `no golden file tests/golden/${name}.txt: run \`npm run golden\` and review it`);
  assert.equal(actual, readFileSync(file, 'utf8'), `tests/golden/${name}.txt differs (a deliberate change: \`npm run golden\`)`);
}

/** The subcommands a help text lists (the first word of each entry under "Commands:"), without `help`. */
function subcommands(help: string): string[] {
  const section = help.split('\nCommands:\n')[1];
  if (section === undefined) return [];
  return [...section.matchAll(/^ {2}(\S+)/gm)].map((m) => m[1]!).filter((c) => c !== 'help');
}

/** Every command path ([], ['serve'], ['systemd', 'install'], ...) with its `--help` transcript, found by walking the help. */
function commandHelp(): Array<{ path: string[]; help: string }> {
  const found: Array<{ path: string[]; help: string }> = [];
  const visit = (path: string[]) => {
    const help = transcript([...path, '--help']);
    found.push({ path, help });
    for (const sub of subcommands(help.split('\n--- stdout\n')[1]!)) visit([...path, sub]);
  };
  visit([]);
  return found;
}

const helpName = (path: string[]) => `help/${['upcall-broker', ...path].join('-')}`;

describe('--help', () => {
  const commands = commandHelp();
  const paths = commands.map((c) => c.path);

  test('the walk finds the commands README documents', () => {
    const names = paths.map((p) => p.join(' '));
    for (const c of ['serve', 'doctor', 'register', 'exec', 'status', 'config check', 'request-key install', 'systemd install', 'mount']) {
      assert.ok(names.includes(c), `${c} in ${names.join(', ')}`);
    }
  });

  for (const { path, help } of commands) {
    test(`upcall-broker ${[...path, '--help'].join(' ')}`, () => {
      matchGolden(helpName(path), help);
    });
  }

  test('no golden help file is left for a command that is gone', () => {
    const want = new Set(paths.map((p) => `${helpName(p).slice('help/'.length)}.txt`));
    const dir = join(GOLDEN, 'help');
    const stale = existsSync(dir) ? readdirSync(dir).filter((f) => !want.has(f)) : [];
    if (UPDATE) for (const f of stale) unlinkSync(join(dir, f));
    else assert.deepEqual(stale, []);
  });
});

/** --json errors: the stable code, the message, and the exit status the code maps to (docs/cli.md). */
const ERRORS: Array<{ name: string; args: string[]; files?: Record<string, string> }> = [
  { name: 'no-broker-status', args: ['status', '--json', '--socket', NO_BROKER] },
  { name: 'no-broker-exec', args: ['exec', '--json', '--socket', NO_BROKER, '--mount', '/mnt', '--', 'true'] },
  { name: 'missing-option', args: ['register', '--json', '--socket', NO_BROKER] },
  { name: 'missing-argument', args: ['unregister', '--json', '--socket', NO_BROKER] },
  { name: 'unknown-option', args: ['doctor', '--json', '--bogus'] },
  { name: 'unknown-command', args: ['nosuchcmd', '--json'] },
  { name: 'register-bad-pid', args: ['register', '--json', '--socket', NO_BROKER, '--for-pid', 'abc', '--mount', '/mnt'] },
  { name: 'bad-pid', args: ['mount', '--json', '--socket', NO_BROKER, '--for-pid', 'abc', '--types', 'nfs', 'server:/export', '/mnt'] },
  { name: 'bad-config', args: ['config', 'check', '--json', 'bad.json'], files: { 'bad.json': '{"logLevel":"loud"}\n' } },
];

describe('--json errors', () => {
  for (const { name, args, files } of ERRORS) {
    test(`upcall-broker ${args.join(' ')}`, () => {
      for (const [f, text] of Object.entries(files ?? {})) writeFileSync(join(tmp, f), text);
      const out = transcript(args);
      matchGolden(`errors/${name}`, out);
      // Whatever the golden file says, the form is the documented one: one JSON line with a code, a status over 0.
      const stdout = out.split('\n--- stdout\n')[1]!.split('\n--- stderr\n')[0]!;
      const parsed = JSON.parse(stdout) as { error: { code: string; message: string } };
      assert.match(parsed.error.code, /^E_[A-Z_]+$/);
      assert.notEqual(/^exit status: (\d+)$/m.exec(out)![1], '0');
    });
  }
});
