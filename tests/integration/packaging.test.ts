/**
 * The published package builds and runs (issue 17): `npm pack`, then
 * `npm install <tarball>` in an empty project with this repository's npm
 * settings (.npmrc: nodedir=/usr; allowScripts), then the installed CLI's
 * `doctor --json`. The tarball has no tests/, so its install step must not
 * build test fixtures (they are built by `npm run fixtures`).
 *
 * Dependencies come from npm's cache when it has them (--prefer-offline: after
 * `npm ci` it has them all, and the test runs offline), else from the registry.
 * `npm test` has built dist/ first; the pack takes it as it is (--ignore-scripts).
 */
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PACKAGE_ROOT } from '../../src/common/paths.js';

const dir = mkdtempSync(join(tmpdir(), 'ub-pack-'));
const project = join(dir, 'project');
const installed = join(project, 'node_modules', 'upcall-broker');
let tarball = '';
let install: SpawnSyncReturns<string>;

/**
 * The environment without npm's own variables: under `npm test` they name this
 * checkout (npm_config_local_prefix, ...), and an npm run inside must act on
 * the empty project only.
 */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) && k !== 'INIT_CWD'));
}

function run(cmd: string, args: string[], cwd: string, timeoutMs = 600_000): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env: cleanEnv(), encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  assert.equal(r.error, undefined, `${cmd} ${args.join(' ')}: ${r.error}`);
  return r;
}

before(() => {
  const pack = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], PACKAGE_ROOT);
  assert.equal(pack.status, 0, pack.stderr);
  tarball = join(dir, (JSON.parse(pack.stdout) as Array<{ filename: string }>)[0]!.filename);
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), `${JSON.stringify({
    name: 'ub-pack-probe', version: '1.0.0', private: true,
    allowScripts: { 'upcall-broker': true, koffi: true, 'node-pty': true },
  }, null, 2)}\n`);
  copyFileSync(join(PACKAGE_ROOT, '.npmrc'), join(project, '.npmrc'));
  install = run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], project);
});

after(() => rmSync(dir, { recursive: true, force: true }));

describe('npm pack, then npm install <tarball> in an empty project', () => {
  test('the tarball holds the built CLI and the C sources, and no tests', () => {
    const files = run('tar', ['tzf', tarball], dir).stdout.split('\n');
    for (const f of ['package/dist/src/cli/main.js', 'package/binding.gyp']) assert.ok(files.includes(f), f);
    const sources = readdirSync(join(PACKAGE_ROOT, 'native-bindings'), { recursive: true, encoding: 'utf8' })
      .filter((f) => /\.[ch]$/.test(f));
    assert.ok(sources.length > 20, `found only ${sources.length} C sources`);
    for (const f of sources) assert.ok(files.includes(`package/native-bindings/${f}`), f);
    assert.deepEqual(files.filter((f) => f.startsWith('package/tests/') || f.startsWith('package/dist/tests/')), []);
  });

  test('the install succeeds and builds the native programs, and no test fixture', () => {
    assert.equal(install.status, 0, `${install.stdout}\n${install.stderr}`);
    assert.doesNotMatch(install.stderr, /No rule to make target/);
    const release = join(installed, 'build', 'Release');
    for (const exe of ['upcall-zygote', 'upcall-spawner', 'upcall-request-key', 'upcall-mount-in']) assert.ok(existsSync(join(release, exe)), exe);
    assert.deepEqual(readdirSync(release).filter((f) => /^ub-(probe|pid-at|seccomp-exec)$/.test(f)), []);
  });

  test('the installed upcall-broker doctor --json reports what the checkout\'s does', () => {
    const bin = join(project, 'node_modules', '.bin', 'upcall-broker');
    const ours = run(bin, ['doctor', '--json'], project, 120_000);
    const checkout = run(process.execPath, [join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js'), 'doctor', '--json'], PACKAGE_ROOT, 120_000);
    type Report = { features: Array<{ name: string; status: string }> };
    const statuses = (r: SpawnSyncReturns<string>) => (JSON.parse(r.stdout) as Report).features.map((f) => `${f.name}: ${f.status}`);
    assert.ok(statuses(ours).length > 5, ours.stdout);
    assert.deepEqual(statuses(ours), statuses(checkout));
    assert.equal(ours.status, checkout.status);
  });
});
