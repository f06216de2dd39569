/**
 * A reader for the TAP that `node --test --test-reporter=tap` prints: every test
 * and suite with its nesting, result and diagnostic block, so a suite run in
 * another process (or in a namespace test VM) can be reported test by test.
 */
export interface TapCase {
  /** Names from the outermost suite down to the test. */
  path: string[];
  ok: boolean;
  directive: 'skip' | 'todo' | null;
  /** The YAML block under a failing test (error, expected, actual, stack). */
  diag: string;
  /** Whether tests are nested under this one (a suite or a test with subtests). */
  hasChildren: boolean;
}

export interface TapSummary {
  cases: TapCase[];
  counts: Record<string, number>;
}

const RESULT = /^( *)(not ok|ok) \d+ - (.*?)(?: # (SKIP|TODO)\b.*)?$/;

export function parseTap(text: string): TapSummary {
  const lines = text.split('\n');
  const cases: TapCase[] = [];
  const counts: Record<string, number> = {};
  const open: { depth: number; name: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const sub = /^( *)# Subtest: (.*)$/.exec(line);
    if (sub) {
      const depth = sub[1]!.length / 4;
      while (open.length && open[open.length - 1]!.depth >= depth) open.pop();
      open.push({ depth, name: sub[2]! });
      continue;
    }
    const count = /^# (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$/.exec(line);
    if (count) {
      counts[count[1]!] = Number(count[2]);
      continue;
    }
    const m = RESULT.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    while (open.length && open[open.length - 1]!.depth > depth) open.pop();
    const path = [...open.filter((o) => o.depth < depth).map((o) => o.name), unescape(m[3]!)];
    let diag = '';
    if (lines[i + 1]?.trim() === '---') {
      const end = lines.findIndex((l, j) => j > i + 1 && l.trim() === '...');
      diag = lines.slice(i + 2, end < 0 ? undefined : end).join('\n');
      if (end > 0) i = end;
    }
    const hasChildren = cases.some((c) => c.path.length === path.length + 1 && path.every((p, k) => c.path[k] === p));
    cases.push({ path, ok: m[2] === 'ok', directive: m[4] ? (m[4].toLowerCase() as 'skip' | 'todo') : null, diag, hasChildren });
    if (open.length && open[open.length - 1]!.depth === depth) open.pop();
  }
  return { cases, counts };
}

/** TAP escapes `#` and `\` in names. */
function unescape(name: string): string {
  return name.replace(/\\([#\\])/g, '$1');
}

/** The tests themselves (not the suites around them). */
export function leafCases(summary: TapSummary): TapCase[] {
  return summary.cases.filter((c) => !c.hasChildren);
}
