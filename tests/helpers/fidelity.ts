/**
 * Ground truth for "the upcall runs as a true child of the container's init"
 * (DESIGN.md): the probe build/fixtures/ub-probe (tests/fixtures/ub-probe.c)
 * prints its execution context one field per line; run once as a real child
 * forked by the container's own init (the oracle) and once through whatever
 * claims to be equivalent, the two outputs are compared field by field.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Newable } from 'inversify';
import { defaultConfig } from '../../src/common/defaults.js';
import { PACKAGE_ROOT } from '../../src/common/paths.js';
import { createContainer } from '../../src/container.js';
import { NullLoggerFactory } from '../../src/logging/winston-logger-factory.js';
import { Pidfd } from '../../src/ns/pidfd.js';
import type { TestContainer } from '../testbed/index.js';
import { CONTAINER_ENV } from '../testbed/launch.js';
import { PROBE } from './fixtures.js';
import { realLibc, realSpawner } from './native.js';
import { initPidfd } from './init-pidfd.js';

export { PROBE };
export const ZYGOTE_BINARY = join(PACKAGE_ROOT, 'build', 'Release', 'upcall-zygote');
export const ZYGOTE_RUNNER_JS = join(PACKAGE_ROOT, 'dist', 'src', 'upcall', 'zygote-runner.js');

/** One probe run: field -> value, in the order the probe printed them. */
export type Probe = ReadonlyMap<string, string>;

export interface FieldComparison {
  readonly field: string;
  /** undefined: the run did not print this field. */
  readonly truth: string | undefined;
  readonly other: string | undefined;
  readonly same: boolean;
}

const PROBE_TIMEOUT_MS = 10_000;
const OUTPUT_CAP = 64 * 1024;

export function parseProbe(stdout: string): Probe {
  const fields = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const at = line.indexOf(': ');
    if (at > 0) fields.set(line.slice(0, at), line.slice(at + 2));
  }
  if (fields.size === 0) throw new Error(`probe printed no fields: ${JSON.stringify(stdout.slice(0, 200))}`);
  return fields;
}

function parseRun(what: string, code: number | null, stdout: string, stderr: string): Probe {
  if (code !== 0) throw new Error(`probe ${what} exited ${code}: ${stderr.trim()}`);
  return parseProbe(stdout);
}

/**
 * The oracle: ub-probe as a direct child of the container's pid 1, forked
 * by init itself. It keeps init's working directory (a plain fork does not
 * chdir); argv and environment are the only things the request chooses.
 */
export async function probeAsInitChild(c: TestContainer): Promise<Probe> {
  const r = await (await c.runAsInitChild([PROBE], { inheritCwd: true })).wait();
  return parseRun(`as child of ${c.name}'s init`, r.code, r.stdout, r.stderr);
}

/** `argvPrefix... ub-probe` started from the host (the test process), stdin empty. */
export function probeWith(argvPrefix: readonly string[], timeoutMs = PROBE_TIMEOUT_MS): Promise<Probe> {
  const [file, ...args] = [...argvPrefix, PROBE];
  const what = `via ${argvPrefix.join(' ')}`;
  return new Promise((resolve, reject) => {
    const child = spawn(file!, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...CONTAINER_ENV } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      try {
        resolve(parseRun(what, code, stdout, stderr));
      } catch (err) {
        reject(err);
      }
    });
  });
}

/** What users have today: `nsenter -t <init> -a ub-probe`. */
export function probeViaNsenter(c: TestContainer): Promise<Probe> {
  return probeWith(['nsenter', '-t', String(c.initPid), '-a']);
}

/** The broker's one-shot spawner (build/Release/upcall-spawner via NativeSpawner). */
export async function probeViaOneShotSpawner(c: TestContainer): Promise<Probe> {
  using target = Pidfd.open(realLibc(), c.initPid);
  const r = await realSpawner().run({ target, argv: [PROBE] });
  return parseRun('via upcall-spawner', r.code, r.stdout.toString('utf8'), r.stderr.toString('utf8'));
}

/**
 * The slice of src/upcall/zygote-runner.ts (UpcallRunner, UpcallRequest,
 * UpcallOutcome) used here, restated so this file compiles without it: the
 * runner is loaded only when it has been built.
 */
interface ZygoteRunnerLike {
  run(req: {
    target: { initPid: number; initStartTime: number; pidnsIno: number; host: boolean; init: Pidfd };
    mode: 'exec';
    argv: readonly string[];
    timeoutMs: number;
    outputCap: number;
  }): Promise<ZygoteOutcome>;
  stop(): Promise<void>;
}

interface ZygoteOutcome {
  code: number | null;
  signal: string | null;
  stdout: Buffer;
  stderr: Buffer;
  /** Per part of the context: "ok", "degraded: ...", "none", ... */
  fields: Record<string, string>;
}

export interface ZygoteProbe {
  readonly probe: Probe;
  /** The runner's own per-field report. */
  readonly context: Readonly<Record<string, string>>;
}

export function zygoteAvailable(): boolean {
  return existsSync(ZYGOTE_BINARY) && existsSync(ZYGOTE_RUNNER_JS);
}

/** A ZygoteRunner built by the composition root's modules (it is @injectable). */
export async function loadZygoteRunner(modulePath = ZYGOTE_RUNNER_JS): Promise<ZygoteRunnerLike> {
  const mod = (await import(pathToFileURL(modulePath).href)) as { ZygoteRunner?: unknown };
  if (typeof mod.ZygoteRunner !== 'function') throw new Error(`${modulePath} exports no ZygoteRunner class`);
  const cls = mod.ZygoteRunner as Newable<ZygoteRunnerLike>;
  const ioc = createContainer(defaultConfig(), new NullLoggerFactory());
  if (!ioc.isBound(cls)) ioc.bind(cls).toSelf().inSingletonScope();
  return ioc.get<ZygoteRunnerLike>(cls);
}

/**
 * The probe as an upcall: exactly the request the broker makes (no cwd, no
 * env), so whatever differs from a real child of init is the runner's doing.
 */
export async function probeViaZygote(runner: ZygoteRunnerLike, c: TestContainer): Promise<ZygoteProbe> {
  const target = { initPid: c.initPid, initStartTime: Number(c.initStartTime), pidnsIno: c.ns.pid, host: false, init: initPidfd(c.initPid) };
  const r = await runner.run({ target, mode: 'exec', argv: [PROBE], timeoutMs: PROBE_TIMEOUT_MS, outputCap: OUTPUT_CAP });
  const what = `via ZygoteRunner (signal ${r.signal})`;
  return { probe: parseRun(what, r.code, r.stdout.toString('utf8'), r.stderr.toString('utf8')), context: r.fields };
}

/** Every field of either run, in the truth's order, then fields only `other` printed. */
export function compareProbes(truth: Probe, other: Probe): FieldComparison[] {
  const fields = [...truth.keys(), ...[...other.keys()].filter((k) => !truth.has(k))];
  return fields.map((field) => {
    const [t, o] = [truth.get(field), other.get(field)];
    return { field, truth: t, other: o, same: t === o };
  });
}

/**
 * A plain-text table, one row per field: "≠" marks a difference, and the
 * other column says "=" where the values agree so the differences stand out.
 */
export function formatTable(rows: readonly FieldComparison[], labels = { truth: 'child of init', other: 'other' }): string {
  const show = (v: string | undefined): string => (v === undefined ? '(missing)' : v.replace(/\s+/g, ' ') || '(empty)');
  const cells = rows.map((r) => [r.same ? ' ' : '≠', r.field, show(r.truth), r.same ? '=' : show(r.other)]);
  const header = [' ', 'field', labels.truth, labels.other];
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: readonly string[]): string => c.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  const differing = rows.filter((r) => !r.same).map((r) => r.field);
  const summary = `${differing.length} of ${rows.length} fields differ${differing.length ? `: ${differing.join(', ')}` : ''}`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line), summary].join('\n');
}
