/**
 * bench/RESULTS.md keeps the latest run of each benchmark; every older run
 * is moved, text unchanged, to the end of bench/RESULTS-archive.md.
 *
 * RESULTS.md is text the harness does not own (its header, hand-written
 * notes), one generated summary table, and one entry per benchmark:
 *
 *   <!-- results:entry {"benchmark":"spawn","title":"spawn","date":"…","command":"…"} -->
 *   ## spawn: 2026-11-27T00:17:28.641Z
 *   - command: `…`
 *   - machine: …
 *   (the run's body, and any notes written under it by hand)
 *   <!-- /results:entry -->
 *
 * Recording a run replaces its benchmark's entry in place (or adds one after
 * the last entry) and rewrites the summary from the entries' metadata; all
 * other text stays as it is. A section in the older appended format
 * (`## <title>: <ISO time>` then `- command:`) found outside the entries is
 * filed as a run of its benchmark, so a process still running the old code
 * loses nothing.
 */
import { closeSync, existsSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';

export interface EntryMeta {
  /** Stable key: all runs of one benchmark share it (e.g. `spawn`, `soak`, `vm-boot-6.12`). */
  benchmark: string;
  /** The section's heading, without its time. */
  title: string;
  /** ISO time of the run. */
  date: string;
  command: string;
  /** One line of headline figures; the summary says "see section" without one. */
  summary?: string;
}

export interface Run extends EntryMeta {
  /** The whole section, from its `## ` heading on. */
  text: string;
}

type Segment = { kind: 'text'; text: string } | { kind: 'summary' } | { kind: 'entry'; run: Run };

export const RESULTS = 'RESULTS.md';
export const ARCHIVE = 'RESULTS-archive.md';

const SUMMARY_OPEN = '<!-- results:summary (generated from the entries below by bench/results.ts; edits here are overwritten) -->';
const SUMMARY_RE = /^<!-- results:summary[^\n]*-->\n[\s\S]*?^<!-- \/results:summary -->\n?/m;
const ENTRY_RE = /^<!-- results:entry (\{.*\}) -->\n([\s\S]*?)^<!-- \/results:entry -->\n?/m;
const LEGACY_HEADING = /^## (.+): (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\n\n- command: `([^`\n]*)`/m;

export const RESULTS_HEADER = `# Benchmark results

The latest run of each benchmark, newest figures only: the table says when and how each was run, and
each entry below holds that run's full output (and any notes written under it). Every older run is in
[RESULTS-archive.md](RESULTS-archive.md), text unchanged, oldest first.

This 2-core VM is shared with other engineers' builds and soak tests, and each entry records the load
average: absolute times swing by 2x between runs while the interleaved ratios hold. Compare ratios from
one run.

Written by \`recordResults\` in bench/results.ts (through \`appendResults\` in bench/harness.ts), called by
\`npm run bench\`, \`npm run soak\` and \`node dist/bench/vm-boot.js\`: a new run replaces its benchmark's
entry here and moves the previous one to the end of the archive. Text outside the entries and the table is
kept as it is. \`node dist/bench/results-archive.js\` files any section appended in the older format.
The hand-written analyses of earlier passes (what changed, where the misses come from, the zygote's
profile) open the archive.
`;

export const ARCHIVE_HEADER = `# Benchmark results: archive

Every run that is no longer the latest of its benchmark, moved here unchanged from
[RESULTS.md](RESULTS.md) (which holds the latest run of each benchmark), appended oldest first. The
hand-written notes of the first two optimisation passes (issue 8) open the file; the runs they quote
follow in time order.
`;

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
export function anchor(heading: string): string {
  return heading.toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-');
}

/** The key an old-style section's title belongs to (the keys the call sites pass today). */
export function legacyBenchmark(title: string, command: string): string {
  const vm = /^namespace test VM, boot to first upcall \((.+)\)$/.exec(title);
  if (vm) return `vm-boot-${vm[1]}`;
  if (title === 'soak') {
    return soakBenchmark(Number(/--minutes\s+([0-9.]+)/.exec(command)?.[1] ?? 2), Number(/--churn-seconds\s+([0-9.]+)/.exec(command)?.[1] ?? 6));
  }
  const known: Record<string, string> = {
    spawn: 'spawn', 'kernel DNS upcall': 'dns', 'request-key handler': 'handler', throughput: 'throughput',
    scale: 'scale', 'unmount to `unmounted`': 'mount-watch',
  };
  return known[title] ?? (anchor(title) || 'unnamed');
}

/**
 * Short soaks (CI runs 30 s) are kept apart from the long ones they would otherwise push into the archive,
 * and so are soaks at a faster churn than the usual container every 6 s (a different load).
 */
export function soakBenchmark(minutes: number, churnSeconds = 6): string {
  return minutes < 5 ? 'soak-short' : churnSeconds < 6 ? 'soak-churn' : 'soak';
}

export function parse(text: string): Segment[] {
  const out: Segment[] = [];
  let rest = text;
  for (;;) {
    const s = SUMMARY_RE.exec(rest);
    const e = ENTRY_RE.exec(rest);
    const m = [s, e].filter((x): x is RegExpExecArray => x !== null).sort((a, b) => a.index - b.index)[0];
    if (!m) break;
    if (m.index > 0) out.push({ kind: 'text', text: rest.slice(0, m.index) });
    if (m === s) out.push({ kind: 'summary' });
    else {
      const meta = JSON.parse(m[1]!) as EntryMeta;
      out.push({ kind: 'entry', run: { ...meta, text: m[2]! } });
    }
    rest = rest.slice(m.index + m[0].length);
  }
  if (rest) out.push({ kind: 'text', text: rest });
  return out;
}

/** Old-style sections in a text segment: each runs to the next `## `/`# ` heading; what is left stays text. */
export function takeLegacy(text: string): { runs: Run[]; rest: string } {
  const runs: Run[] = [];
  let rest = '';
  const parts = text.split(/^(?=#{1,2} )/m);
  for (const part of parts) {
    const m = LEGACY_HEADING.exec(part);
    if (m && m.index === 0) {
      const [, title, date, command] = m as unknown as [string, string, string, string];
      runs.push({ benchmark: legacyBenchmark(title, command), title, date, command, text: part.replace(/\n*$/, '\n') });
    } else rest += part;
  }
  return { runs, rest };
}

const cell = (s: string) => s.replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|');

export function summaryTable(runs: readonly Run[]): string {
  const rows = runs.map((r) => {
    const heading = `${r.title}: ${r.date}`;
    const when = r.date.replace(/T(\d\d:\d\d).*$/, ' $1Z');
    return `| ${cell(r.benchmark)} | ${when} | \`${cell(r.command.replace(/`/g, "'"))}\` | ${r.summary ? cell(r.summary) : 'see section'} | [${cell(heading.replace(/[[\]]/g, ''))}](#${anchor(heading)}) |`;
  });
  return [SUMMARY_OPEN, '', '| benchmark | latest run (UTC) | command | headline | full result |', '|---|---|---|---|---|', ...rows, '', '<!-- /results:summary -->', ''].join('\n');
}

function renderEntry(r: Run): string {
  const { text, ...meta } = r;
  const json = JSON.stringify(meta).replace(/</g, '\\u003c').replace(/>/g, '\\u003e');
  return `<!-- results:entry ${json} -->\n${text.replace(/\n*$/, '\n')}<!-- /results:entry -->\n`;
}

export function render(segments: readonly Segment[]): string {
  const entries = segments.flatMap((s) => (s.kind === 'entry' ? [s.run] : []));
  const pieces = segments.map((s) => (s.kind === 'text' ? s.text : s.kind === 'summary' ? summaryTable(entries) : renderEntry(s.run)));
  return `${pieces.map((p) => p.replace(/^\n+|\n+$/g, '')).filter((p) => p !== '').join('\n\n')}\n`;
}

/**
 * Files runs into a parsed RESULTS.md: each becomes its benchmark's entry
 * unless that entry is newer. Returns the sections to archive, oldest first.
 * Old-style sections found in the text are filed too.
 */
export function file(segments: Segment[], incoming: readonly Run[]): Run[] {
  const legacy: Run[] = [];
  for (const s of segments) {
    if (s.kind !== 'text') continue;
    const { runs, rest } = takeLegacy(s.text);
    legacy.push(...runs);
    s.text = rest;
  }
  if (!segments.some((s) => s.kind === 'summary')) {
    const at = segments.findIndex((s) => s.kind === 'entry');
    segments.splice(at < 0 ? segments.length : at, 0, { kind: 'summary' });
  }
  const archived: Run[] = [];
  const all = [...legacy, ...incoming].map((run, i) => ({ run, i }))
    .sort((a, b) => a.run.date.localeCompare(b.run.date) || a.i - b.i).map((x) => x.run);
  for (const run of all) {
    const at = segments.findIndex((s) => s.kind === 'entry' && s.run.benchmark === run.benchmark);
    const current = at >= 0 ? (segments[at] as { run: Run }).run : undefined;
    if (current && current.date > run.date) { archived.push(run); continue; }
    if (current) { archived.push(current); segments[at] = { kind: 'entry', run }; continue; }
    let last = -1;
    segments.forEach((s, i) => { if (s.kind === 'entry' || s.kind === 'summary') last = i; });
    segments.splice(last + 1, 0, { kind: 'entry', run });
  }
  return archived.sort((a, b) => a.date.localeCompare(b.date));
}

/** Serialises writers of one bench/ directory (a lock file; a stale one, older than a minute, is taken over). */
function withLock<T>(dir: string, fn: () => T): T {
  const lock = join(dir, `.${RESULTS}.lock`);
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx'));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      try {
        if (Date.now() - statSync(lock).mtimeMs > 60_000 || Date.now() > deadline) unlinkSync(lock);
      } catch { /* gone meanwhile */ }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
  }
  try {
    return fn();
  } finally {
    try { unlinkSync(lock); } catch { /* taken over */ }
  }
}

/**
 * Records runs in `dir`/RESULTS.md (read right before the write, replaced by
 * rename) and appends what they displace to `dir`/RESULTS-archive.md.
 * With no runs, files any old-style sections and rewrites the summary.
 */
export function recordResults(dir: string, runs: readonly Run[]): { archived: Run[] } {
  return withLock(dir, () => {
    const path = join(dir, RESULTS);
    const segments = parse(existsSync(path) ? readFileSync(path, 'utf8') : RESULTS_HEADER);
    const archived = file(segments, runs);
    if (archived.length) {
      const archive = join(dir, ARCHIVE);
      const head = existsSync(archive) ? '' : ARCHIVE_HEADER;
      appendFileSync(archive, head + archived.map((r) => `\n${r.text.replace(/\n*$/, '\n')}`).join(''));
    }
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, render(segments));
    renameSync(tmp, path);
    return { archived };
  });
}
