/**
 * Checks of request-key.conf patterns and argument templates (keyutils 1.6.3
 * request-key.c), shared by the config schema (src/common/config-schema.ts)
 * and the rule matcher (src/upcall/request-key/rules.ts).
 */

/** The single-letter macros an argument may be. */
export const MACRO_LETTERS: ReadonlySet<string> = new Set(['o', 'k', 't', 'd', 'c', 'u', 'g', 'T', 'P', 'S']);

/** Why an argument template is invalid, or null. */
export function templateError(arg: string): string | null {
  if (!arg.startsWith('%')) return null;
  if (arg === '%') return 'a lone "%" (missing macro name)';
  if (arg.startsWith('%%')) return null;
  if (arg.startsWith('%{')) return `"${arg}": key substitution macros are not supported`;
  if (arg.length !== 2 || !MACRO_LETTERS.has(arg[1]!)) return `"${arg}": unknown macro (use %o %k %t %d %c %u %g %T %P %S, or %% for a literal %)`;
  return null;
}

/** Why a request-key pattern is unusable (in our config, or in a request-key.d line), or null. */
export function patternError(pattern: string): string | null {
  if (pattern === '') return 'empty pattern';
  if (/[\s\0]/.test(pattern)) return `"${pattern}" contains whitespace (request-key splits lines on it)`;
  if ((pattern.match(/\*/g) ?? []).length > 1) return `"${pattern}" has more than one '*' (request-key treats the second one as a literal)`;
  if (Buffer.byteLength(pattern) > 1024) return 'pattern over 1024 bytes';
  return null;
}

/** Key types the kernel can ask for (no wildcard: a rule names one type). */
export const KEY_TYPE_RE = /^[A-Za-z0-9_.+-][A-Za-z0-9_.:+-]{0,31}$/;
