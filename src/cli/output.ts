import { BrokerError, exitStatusFor } from '../common/errors.js';

/** Print a command's data: JSON when asked, the human form otherwise. */
export function printResult(json: boolean, data: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : `${human()}\n`);
}

/**
 * Report a failure in the documented form and return the exit status for its
 * code: with --json `{ "error": { "code", "message" } }` on stdout, else one line on stderr.
 */
export function reportError(json: boolean, err: unknown): number {
  const e = BrokerError.from(err);
  if (json) process.stdout.write(`${JSON.stringify({ error: e.toJSON() })}\n`);
  else process.stderr.write(`upcall-broker: ${e.code}: ${e.message}\n`);
  return exitStatusFor(e.code);
}

/** A fixed-width table for human output. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}
