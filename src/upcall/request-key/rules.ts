/**
 * request-key.conf semantics, reimplemented exactly (keyutils 1.6.3
 * request-key.c), for the broker's own key-type rules and for checking the
 * lines `request-key install` writes:
 *
 * - a pattern is exact, or holds one '*' that matches any run of bytes; a
 *   second '*' is a literal character (that is what request-key's match() does;
 *   our validation refuses it so nobody relies on it);
 * - a match's "wildness" is the number of bytes the '*' skipped; of all matching
 *   lines the one with the least wildness wins, compared field by field (op,
 *   type, description, callout), and on a tie the first one read wins;
 * - a macro is a whole argument: `%o %k %t %d %c %u %g %T %P %S`; `%%x` stands
 *   for the literal `%x`; an argument that does not start with '%' is literal.
 *   keyutils' `%{type:desc}` key substitution is not supported.
 */
import { BrokerError } from '../../common/errors.js';
import { templateError } from '../../common/key-patterns.js';
import type { RequestKeyRule } from '../../common/tokens.js';

export { KEY_TYPE_RE, patternError, templateError } from '../../common/key-patterns.js';

/** The bytes the '*' skipped, or null when the pattern does not match. */
export function matchPattern(pattern: string, datum: string): number | null {
  const p = Buffer.from(pattern, 'utf8');
  const d = Buffer.from(datum, 'utf8');
  const star = p.indexOf(0x2a);
  if (star < 0) return p.equals(d) ? 0 : null;
  if (d.length < p.length - 1) return null;
  const head = p.subarray(0, star);
  const tail = p.subarray(star + 1);
  if (!d.subarray(0, head.length).equals(head)) return null;
  if (!d.subarray(d.length - tail.length).equals(tail)) return null;
  return d.length - (p.length - 1);
}

export interface KeyRequestFields {
  type: string;
  description: string;
  callout: string;
}

/** Lexicographic comparison of wildness vectors, as request-key.c's lookup. */
function lessWild(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    if (a[i]! < b[i]!) return true;
    if (a[i]! > b[i]!) return false;
  }
  return false; // equal: the earlier one stays
}

/** The best matching rule (least wildness, first on ties), or null. */
export function selectRule<R extends Pick<RequestKeyRule, 'type' | 'description' | 'callout'>>(
  rules: readonly R[], key: KeyRequestFields,
): { rule: R; index: number; wildness: number[] } | null {
  let best: { rule: R; index: number; wildness: number[] } | null = null;
  rules.forEach((rule, index) => {
    const t = matchPattern(rule.type, key.type);
    if (t === null) return;
    const d = matchPattern(rule.description, key.description);
    if (d === null) return;
    const c = matchPattern(rule.callout, key.callout);
    if (c === null) return;
    const wildness = [0, t, d, c]; // the op is always "create"
    if (best === null || lessWild(wildness, best.wildness)) best = { rule, index, wildness };
  });
  return best;
}

/** Values of the single-letter macros. */
export interface Macros {
  o: string; k: string; t: string; d: string; c: string;
  u: string; g: string; T: string; P: string; S: string;
}
/** Expand an argument template; each macro is a whole argument. Throws E_CONFIG on a bad template. */
export function expandArgs(template: readonly string[], macros: Macros): string[] {
  return template.map((arg) => {
    const err = templateError(arg);
    if (err !== null) throw new BrokerError('E_CONFIG', `request-key rule argument ${err}`);
    if (!arg.startsWith('%')) return arg;
    if (arg.startsWith('%%')) return arg.slice(1);
    return macros[arg[1] as keyof Macros];
  });
}

/**
 * Translate a uid/gid as the initial user namespace sees it into a user
 * namespace, from that namespace's uid_map/gid_map text; overflowid when unmapped.
 */
export function mapIdInto(mapText: string, hostId: number, overflow = 65534): number {
  if (hostId < 0) return overflow;
  for (const line of mapText.split('\n')) {
    const [inside, outside, count] = line.trim().split(/\s+/).map(Number);
    if (inside === undefined || outside === undefined || count === undefined || Number.isNaN(count)) continue;
    if (hostId >= outside && hostId < outside + count) return inside + (hostId - outside);
  }
  return overflow;
}
