/**
 * `npm run soak -- --minutes N [--containers K]` (root; not part of `npm test`).
 *
 * A real broker under mixed load for N minutes: registrations and
 * unregistrations from inside containers and from host root, exec and DNS
 * upcalls (quick, failing, timing out, never answered), lookups over the
 * tenant socket, and container churn (a container is replaced every few
 * seconds, leaving its registrations init-exited). At the end, with the load
 * stopped and every container gone:
 *
 * - lost registrations: every acknowledged registration not since removed is
 *   listed (live, or init-exited for a stopped container), and after a SIGKILL
 *   and restart every live one is back;
 * - fds: the broker's /proc/PID/fd count is back to its baseline;
 * - processes: the broker's only child is the zygote, the zygote has none, no
 *   upcall program or spawner survives;
 * - memory: RSS sampled every second, a least-squares slope fitted after the
 *   warm-up (the first 25 % of the run), reported in KiB/min;
 * - upcalls: each answered as its kind expects (ok, E_NOT_FOUND, E_UPCALL_TIMEOUT),
 *   unless its container was stopped or its registration removed meanwhile;
 * - the broker never answered E_INTERNAL and never crashed.
 *
 * A summary is printed and recorded in bench/RESULTS.md ("soak"; "soak-short" under 5 min). Exit 0 when
 * every check holds, 1 otherwise. `--minutes 0.5` is the CI-sized run.
 */
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { appendResults } from '../../bench/harness.js';
import { soakBenchmark } from '../../bench/results.js';
import { BrokerClient } from '../../src/client/broker-client.js';
import { defaultConfig } from '../../src/common/defaults.js';
import { PACKAGE_ROOT } from '../../src/common/paths.js';
import type { RegistrationInfo } from '../../src/common/types.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { mountTmpfs } from '../helpers/in-container.js';
import { admin, batchArgv, childrenWithExe, exeOf, fdCount, readOr, rssKiB, SPAWNER_EXE, ZYGOTE_EXE } from '../helpers/reliability.js';
import { until } from '../helpers/until.js';
import { Testbed, type TestContainer } from '../testbed/index.js';

/** What each of a process's fds points at (socket:[..], pipe:[..], a path). */
function fdTargets(pid: number): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      out.push(readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/\[\d+\]$/, '[]'));
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** The targets in `now` beyond those in `before` (as multisets). */
function fdDiff(before: string[], now: string[]): string[] {
  const left = [...before];
  return now.filter((t) => {
    const i = left.indexOf(t);
    if (i < 0) return true;
    left.splice(i, 1);
    return false;
  });
}

const args = process.argv.slice(2);
const opt = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const MINUTES = opt('minutes', 2);
const CONTAINERS = opt('containers', 4);
const CHURN_EVERY_MS = opt('churn-seconds', 6) * 1000;
if (!(MINUTES > 0) || !(CONTAINERS >= 2)) throw new Error('usage: soak --minutes N (> 0) [--containers K (>= 2)] [--churn-seconds S]');

// Only a tail of the broker's debug log is kept: the checks need its crash lines, which are kept apart.
const broker = new BrokerProcess({ keepOutputBytes: 16 << 20 });
const bed = new Testbed();
let seq = 0;

/** What the soak knows it was told about one registration: whose it is, and whether it is being (or was) removed. */
interface Acked {
  container: TestContainer | null;
  removed: boolean;
  removing?: boolean;
}
/** Every acknowledged registration. */
const acked = new Map<string, Acked>();
const live: TestContainer[] = [];
const stopped = new Set<TestContainer>();
/** Init pids of stopped containers whose registration batch was cut short: their unanswered registrations may exist. */
const interrupted = new Set<number>();
const outcomes: Record<string, Record<string, number>> = {};
const problems: string[] = [];
/** Upcalls whose answer was not the one expected, on a registration nothing happened to meanwhile. */
const unexplained: string[] = [];

function count(kind: string, code: string): void {
  const k = (outcomes[kind] ??= {});
  k[code] = (k[code] ?? 0) + 1;
  if (/^E_(INTERNAL|PROTOCOL)\b/.test(code)) problems.push(`${kind} answered ${code}`);
}

const pick = <T>(xs: readonly T[]): T | undefined => xs[Math.floor(Math.random() * xs.length)];
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function newContainer(): Promise<TestContainer> {
  const c = await bed.create({
    name: `soak${++seq}`,
    hosts: '192.0.2.90 files.test',
    records: [{ name: 'svc.test', type: 'A', address: `192.0.2.${(seq % 200) + 1}`, ttl: 30 }, { name: 'slow.test', type: 'A', address: '192.0.2.91' }],
    dnsBehaviours: [{ name: 'slow.test', kind: 'noanswer' }],
  });
  await mountTmpfs(c, '/mnt/s');
  live.push(c);
  return c;
}

/** Run the batch client inside a container (tenant socket); its answers, or null when the container went away. */
async function inside(c: TestContainer, spec: unknown): Promise<Array<{ ok: boolean; code?: string; result?: unknown }> | null> {
  if (stopped.has(c)) return null;
  try {
    const r = await c.exec(batchArgv(broker.tenantSocket, spec), { timeoutMs: 30_000 });
    return r.code === 0 ? JSON.parse(r.stdout) : null;
  } catch {
    return null; // stopped under us
  }
}

/** Inside a container: register twice, list, unregister the second (the container's own client). */
async function registrationRound(): Promise<void> {
  const c = pick(live);
  if (!c) return;
  const answers = await inside(c, { mode: 'batch', requests: [
    { op: 'register', params: { mountpoint: '/mnt/s', source: `soak ${seq}` } },
    { op: 'list' },
    { op: 'register', params: { mountpoint: '/mnt/s' } },
    { op: 'unregister', params: { id: '$registered' } },
  ] });
  if (!answers) {
    // The container was stopped under the batch: what it registered before that is unknown here.
    if (stopped.has(c)) interrupted.add(c.initPid);
    return;
  }
  const [first, list, second, unreg] = answers;
  for (const [kind, a] of [['register', first], ['list', list], ['register', second], ['unregister', unreg]] as const) count(kind, a?.ok ? 'ok' : a?.code ?? '?');
  if (first?.ok) acked.set((first.result as RegistrationInfo).id, { container: c, removed: false });
  if (second?.ok) acked.set((second.result as RegistrationInfo).id, { container: c, removed: unreg?.ok === true });
  // Host root: a registration of the host context; at most HOST_KEPT are kept, the oldest go first.
  try {
    const r = await admin<RegistrationInfo>(broker, 'register', { mountpoint: '/', source: 'soak host' });
    count('register', 'ok');
    acked.set(r.id, { container: null, removed: false });
    const host = [...acked.entries()].filter(([, v]) => v.container === null && !v.removed);
    for (const [id, v] of host.slice(0, Math.max(0, host.length - HOST_KEPT))) await unregister(id, v);
  } catch (err) {
    count('register', (err as { code?: string }).code ?? '?');
  }
}

const HOST_KEPT = 20;

/** Unregister as host root (a runtime cleaning up), counting the outcome. */
async function unregister(id: string, v: Acked): Promise<void> {
  v.removing = true; // from now on an upcall on it may find it gone
  try {
    await admin(broker, 'unregister', { id });
    v.removed = true;
    count('unregister', 'ok');
  } catch (err) {
    count('unregister', (err as { code?: string }).code ?? '?');
  }
}

/** One upcall through the admin socket, of a random kind, on a random acknowledged registration. */
async function upcallRound(client: BrokerClient): Promise<void> {
  const candidates = [...acked.entries()].filter(([, v]) => !v.removed && (v.container === null || !stopped.has(v.container)));
  const target = pick(candidates);
  if (!target) return;
  const [id, v] = target;
  // Each kind, its request, and its answer while the container keeps running and the registration stays.
  const kinds: Array<[string, Record<string, unknown>, string]> = [
    ['exec', { op: 'exec', mount: id, argv: ['true'] }, 'ok'],
    ['exec', { op: 'exec', mount: id, argv: ['sh', '-c', 'echo out; echo err >&2; exit 3'] }, 'ok'],
    ['exec-timeout', { op: 'exec', mount: id, argv: ['sh', '-c', 'sleep 30 & sleep 30'], timeoutMs: 300 }, 'E_UPCALL_TIMEOUT'],
    ['exec-missing', { op: 'exec', mount: id, argv: ['/no/such/program'] }, 'E_NOT_FOUND'],
    ['resolve', { op: 'resolve', mount: id, description: 'svc.test' }, 'ok'],
    ['resolve', { op: 'resolve', mount: id, description: 'files.test', callout: 'ipv4' }, 'ok'],
    ['resolve-slow', { op: 'resolve', mount: id, description: 'slow.test' }, 'ok'],
  ];
  // Host-context registrations resolve in the host: only names the host knows.
  const usable = v.container === null ? kinds.filter(([k]) => !k.startsWith('resolve')) : kinds;
  const [kind, { op, ...params }, expected] = pick(usable)!;
  let code: string;
  let why = '';
  try {
    const r = await client.request<{ signal?: string | null }>(op as string, params);
    code = r?.signal ? `ok, killed by ${r.signal}` : 'ok';
  } catch (err) {
    code = (err as { code?: string }).code ?? '?';
    why = `: ${(err as Error).message} ${JSON.stringify((err as { details?: unknown }).details ?? {})}`;
  }
  // Any other answer must be explained by what the churn did to the registration meanwhile.
  const raced = v.container !== null ? stopped.has(v.container) : v.removing === true;
  if (code === expected) count(kind, code);
  else if (raced) count(kind, `${code} (${v.container ? 'container stopped' : 'unregistered'} meanwhile)`);
  else {
    count(kind, `${code} (unexplained)`);
    unexplained.push(`${kind} on ${id} (${v.container ? `container ${v.container.initPid}` : 'host'}): ${code}${why}`);
  }
}

/** A second of lookups from inside a container, over the tenant socket. */
async function tenantLookups(): Promise<void> {
  const c = pick(live);
  const own = [...acked.entries()].find(([, v]) => v.container === c && !v.removed)?.[0];
  if (!c || !own) return;
  const r = await inside(c, { mode: 'series', op: 'resolve', params: { mount: own, description: 'svc.test' }, durationMs: 1000 }) as unknown as { counts: Record<string, number> } | null;
  for (const [code, n] of Object.entries(r?.counts ?? {})) for (let i = 0; i < n; i++) count('tenant-resolve', code);
}

/**
 * Replace the oldest container. Its registrations turn init-exited; the
 * runtime removes those of the container stopped before it (so some dead ones
 * are always around, and the number held stays bounded).
 */
async function churn(): Promise<void> {
  const old = live.shift();
  if (old) {
    stopped.add(old);
    await old.stop();
    count('container-stop', 'ok');
  }
  for (const [id, v] of [...acked.entries()].filter(([, x]) => x.container !== null && x.container !== old && stopped.has(x.container) && !x.removed)) {
    await unregister(id, v);
  }
  await newContainer();
  count('container-start', 'ok');
}

async function loop(until: number, body: () => Promise<void>, gapMs: number): Promise<void> {
  while (performance.now() < until) {
    try {
      await body();
    } catch (err) {
      problems.push(`worker: ${(err as Error).stack ?? String(err)}`);
    }
    await pause(gapMs);
  }
}

/** Least-squares slope (per minute) of samples [tMs, value] and the fit's R². */
function slope(samples: Array<[number, number]>): { perMinute: number; r2: number } {
  const n = samples.length;
  if (n < 3) return { perMinute: 0, r2: 0 };
  const mx = samples.reduce((s, [x]) => s + x, 0) / n;
  const my = samples.reduce((s, [, y]) => s + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (const [x, y] of samples) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
    syy += (y - my) ** 2;
  }
  const b = sxx === 0 ? 0 : sxy / sxx;
  return { perMinute: b * 60_000, r2: syy === 0 || sxx === 0 ? 0 : (sxy * sxy) / (sxx * syy) };
}

/**
 * What the soak runs: the checkout's commit, how many tracked files differ
 * from it, and the native build's newest mtime (the broker and zygote run
 * from dist/ and the native dir: a rebuild in the same tree mid-soak changes
 * what later processes run, and the summary says so).
 */
function provenance(): { commit: string; dirty: number; nativeMtime: number } {
  const git = (...a: string[]) => {
    try {
      return execFileSync('git', ['-C', PACKAGE_ROOT, ...a], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return '';
    }
  };
  const dir = defaultConfig().nativeDir;
  let nativeMtime = 0;
  try {
    for (const f of readdirSync(dir)) nativeMtime = Math.max(nativeMtime, statSync(join(dir, f)).mtimeMs);
  } catch {
    // no native dir: the broker fails to start and says so
  }
  return { commit: git('rev-parse', '--short', 'HEAD') || '?', dirty: git('status', '--porcelain', '--untracked-files=no').split('\n').filter(Boolean).length, nativeMtime };
}

/** Processes anywhere whose executable is one of ours (upcall programs are checked per container by the testbed). */
function strayNative(zygote: number | null): string[] {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).flatMap((pid) => {
    const exe = exeOf(pid);
    if (exe === SPAWNER_EXE || (exe === ZYGOTE_EXE && pid !== zygote)) return [`${pid} ${readOr(`/proc/${pid}/cmdline`).split('\0').join(' ')}`];
    return [];
  });
}

async function main(): Promise<number> {
  const started = performance.now();
  const built = provenance();
  const runMs = MINUTES * 60_000;
  await broker.start();
  const pid = broker.pid!;
  for (let i = 0; i < CONTAINERS; i++) await newContainer();
  // Warm the broker up (zygote started, code paths compiled), then take the fd baseline with nothing registered.
  const warm = await inside(live[0]!, { mode: 'batch', requests: [{ op: 'register', params: { mountpoint: '/mnt/s' } }] });
  const warmId = (warm?.[0]?.result as RegistrationInfo | undefined)?.id;
  if (!warmId) throw new Error('warm-up registration failed');
  await admin(broker, 'exec', { mount: warmId, argv: ['true'] });
  await admin(broker, 'resolve', { mount: warmId, description: 'svc.test' });
  await admin(broker, 'unregister', { id: warmId });
  await quiesce(pid);
  const baselineFds = await settledFdCount(pid);
  const baselineTargets = fdTargets(pid);
  const zygote = childrenWithExe(pid).find((c) => c.exe === ZYGOTE_EXE)?.pid ?? null;

  const t0 = performance.now();
  const end = t0 + runMs;
  const rss: Array<[number, number]> = [];
  const fds: Array<[number, number]> = [];
  const sampler = setInterval(() => {
    rss.push([performance.now() - t0, rssKiB(pid)]);
    fds.push([performance.now() - t0, fdCount(pid)]);
  }, 1000);
  const clients = await Promise.all([0, 1, 2].map(() => BrokerClient.connect(broker.adminSocket)));
  await Promise.all([
    loop(end, churn, CHURN_EVERY_MS),
    loop(end, registrationRound, 150),
    ...clients.map((c) => loop(end, () => upcallRound(c), 20)),
    loop(end, tenantLookups, 500),
  ]);
  clearInterval(sampler);
  for (const c of clients) c.close();

  // Load off. Every registration the soak was told about and did not remove must be listed.
  const listed = new Map((await admin<RegistrationInfo[]>(broker, 'list')).map((r) => [r.id, r]));
  const kept = [...acked.entries()].filter(([, v]) => !v.removed);
  const lost = kept.filter(([id]) => !listed.has(id)).map(([id]) => id);
  const unexpected = [...listed.keys()].filter((id) => acked.has(id)
    ? acked.get(id)!.removed
    : !interrupted.has(listed.get(id)!.context.initPid)); // an interrupted batch's unanswered registration is not unexpected
  const wrongState = kept.filter(([id, v]) => listed.get(id)?.state !== (v.container === null || !stopped.has(v.container) ? 'live' : 'init-exited')).map(([id]) => id);
  // A restart: a second broker started on a copy of the state files (as after a SIGKILL) restores
  // every live one (init-exited ones are dropped, by design). The first keeps running for the
  // fd and process checks against its own baseline.
  const second = new BrokerProcess();
  let restored = new Set<string>();
  try {
    mkdirSync(second.stateDir, { recursive: true, mode: 0o700 });
    // The snapshot and its journals (docs/operations.md, "State").
    for (const f of readdirSync(broker.stateDir).filter((n) => /^registrations\.(json|journal\.\d+)$/.test(n))) {
      copyFileSync(join(broker.stateDir, f), join(second.stateDir, f));
    }
    await second.start();
    restored = new Set((await admin<RegistrationInfo[]>(second, 'list')).map((r) => r.id));
  } finally {
    await second.dispose();
  }
  const liveKept = kept.filter(([id]) => listed.get(id)?.state === 'live').map(([id]) => id);
  const lostOnRestart = liveKept.filter((id) => !restored.has(id));
  // Back to nothing: every container stopped, everything unregistered, and the broker idle again.
  for (const c of live.splice(0)) {
    stopped.add(c);
    await c.stop();
  }
  for (const id of listed.keys()) await admin(broker, 'unregister', { id }).catch((err: { code?: string }) => problems.push(`final unregister ${id}: ${err.code}`));
  const leftover = await admin<RegistrationInfo[]>(broker, 'list');
  if (leftover.length > 0) problems.push(`${leftover.length} registrations left after unregistering all`);
  await quiesce(pid);
  // A connection the last request closed may still hold its socket and pidfd for a moment.
  await until('the fd count to settle', () => fdCount(pid) <= baselineFds, 5000, 50).catch(() => undefined);
  const finalFds = await settledFdCount(pid);
  const extraFds = finalFds > baselineFds ? fdDiff(baselineTargets, fdTargets(pid)) : [];
  const kids = childrenWithExe(pid);
  const zygote2 = kids.find((c) => c.exe === ZYGOTE_EXE)?.pid ?? null;
  const strays = strayNative(zygote2);
  const zygoteKids = zygote2 ? childrenWithExe(zygote2) : [];

  const warm25 = rss.filter(([t]) => t >= runMs * 0.25);
  const mem = slope(warm25);
  const fdTrend = slope(fds.filter(([t]) => t >= runMs * 0.25));
  const rssFirst = warm25[0]?.[1] ?? 0;
  const rssLast = rss.at(-1)?.[1] ?? 0;
  const rssMax = Math.max(...rss.map(([, v]) => v));
  // A growth trend: a steady slope (good fit) that adds up to more than 10 % of the RSS over the run.
  const memGrowth = mem.r2 > 0.5 && mem.perMinute * (runMs * 0.75) / 60_000 > rssFirst * 0.1;
  const totals = Object.fromEntries(Object.entries(outcomes).map(([k, v]) => [k, Object.values(v).reduce((a, b) => a + b, 0)]));
  const checks: Array<[string, boolean, string]> = [
    ['lost registrations', lost.length === 0 && unexpected.length === 0 && wrongState.length === 0,
      `${lost.length} lost, ${unexpected.length} unexpected, ${wrongState.length} in the wrong state, of ${kept.length} kept (${acked.size} acknowledged)` +
      (unexpected.length ? `; unexpected: ${unexpected.map((id) => `${id} (${listed.get(id)?.state}, source ${JSON.stringify(listed.get(id)?.source)}, ${acked.has(id) ? 'acknowledged and removed' : 'never acknowledged'})`).join('; ')}` : '')],
    ['lost on restart', lostOnRestart.length === 0, `${lostOnRestart.length} of ${liveKept.length} live registrations missing from a broker restarted on a copy of its state files`],
    ['fds (after everything was removed)', finalFds <= baselineFds, `${finalFds} now, baseline ${baselineFds}${extraFds.length ? ` (new: ${extraFds.join(', ')})` : ''}; during the load: ${Math.min(...fds.map(([, v]) => v))}..${Math.max(...fds.map(([, v]) => v))}, trend after warm-up ${fdTrend.perMinute.toFixed(1)}/min`],
    ['processes', kids.every((k) => k.exe === ZYGOTE_EXE) && strays.length === 0 && zygoteKids.length === 0,
      `broker children: ${kids.map((k) => k.exe?.split('/').pop()).join(', ') || 'none'}; zygote children: ${zygoteKids.length}; strays: ${strays.join('; ') || 'none'}`],
    ['memory', !memGrowth, `RSS ${rss[0]?.[1] ?? 0} KiB at start, ${rssFirst} after warm-up, ${rssLast} at the end, max ${rssMax}; slope after warm-up ${mem.perMinute.toFixed(0)} KiB/min (R² ${mem.r2.toFixed(2)})`],
    ['upcalls answered as expected', unexplained.length === 0,
      `${unexplained.length} answers that neither the kind of upcall nor a container stopped (or registration removed) meanwhile explain${unexplained.length ? `: ${unexplained.slice(0, 5).join('; ')}` : ''}`],
    ['no internal errors, no crash', problems.length === 0 && broker.crashLines().length === 0, [...problems.slice(0, 5), ...broker.crashLines().slice(0, 5)].join(' | ') || 'none'],
  ];
  const ok = checks.every(([, pass]) => pass);
  const rebuilt = provenance().nativeMtime !== built.nativeMtime;
  const table = ['| check | result | figures |', '|---|---|---|', ...checks.map(([name, pass, text]) => `| ${name} | ${pass ? 'pass' : '**FAIL**'} | ${text} |`)].join('\n');
  const load = Object.entries(outcomes).sort().map(([k, v]) => `${k} ${totals[k]} (${Object.entries(v).map(([c, n]) => `${c} ${n}`).join(', ')})`).join('; ');
  const text = `${MINUTES} min of load (${CONTAINERS} containers, one replaced every ${CHURN_EVERY_MS / 1000} s; ${seq} containers in all), ` +
    `then load off and checks. ${ok ? 'All checks pass.' : '**Some checks FAIL.**'}\n\n${table}\n\nLoad: ${load}.\n\n` +
    `(broker pid ${pid}; zygote ${zygote ?? '-'} at the baseline, ${zygote2 ?? '-'} at the end; ${((performance.now() - started) / 1000).toFixed(0)} s in all; ` +
    `code ${built.commit}${built.dirty ? ` with ${built.dirty} tracked files changed` : ''}, native build ${rebuilt ? '**rebuilt during the run**' : 'unchanged during the run'})`;
  process.stdout.write(`\n== soak\n${text}\n`);
  appendResults(PACKAGE_ROOT, { benchmark: soakBenchmark(MINUTES, CHURN_EVERY_MS / 1000), title: 'soak', command: `npm run soak -- ${args.join(' ')}`.trim(), body: text, summary: `${ok ? 'all checks pass' : `**FAIL**: ${checks.filter(([, pass]) => !pass).map(([name]) => name).join(', ')}`}; ${MINUTES} min, ${seq} containers` });
  return ok ? 0 : 1;
}

/**
 * The broker's fd count once in-between states have passed: the least of a
 * few samples over half a second (a client that just disconnected leaves its
 * socket and peer pidfd open until the broker has seen the close).
 */
async function settledFdCount(pid: number): Promise<number> {
  let least = fdCount(pid);
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 50));
    least = Math.min(least, fdCount(pid));
  }
  return least;
}

/** Wait until the broker is idle: no child but the zygote, which has none (its per-context helpers expire). */
async function quiesce(pid: number): Promise<void> {
  await until('the broker to be idle', () => {
    const kids = childrenWithExe(pid);
    const z = kids.find((k) => k.exe === ZYGOTE_EXE);
    return kids.every((k) => k.exe === ZYGOTE_EXE) && (!z || childrenWithExe(z.pid).length === 0);
  }, 30_000, 100).catch((err: Error) => problems.push(err.message));
}

let code = 1;
try {
  code = await main();
} catch (err) {
  process.stderr.write(`soak failed: ${(err as Error).stack ?? String(err)}\n`);
} finally {
  await bed.dispose().catch((err: Error) => process.stderr.write(`testbed: ${err.message}\n`));
  await broker.dispose();
}
process.exit(code);

