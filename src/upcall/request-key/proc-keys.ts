/**
 * /proc/keys, as security/keys/proc.c prints it:
 *
 *   "%08x %c%c%c%c%c%c%c %5d %4s %08x %5d %5d %-9.9s " + the type's describe()
 *   serial flags        usage expiry perm  uid  gid  type
 *
 * expiry is "perm", "expd", or the time left in its largest whole unit
 * ("59s", "4m", "2h", "3d", "1w"), rounded down. uid/gid are as the reading
 * process's user namespace sees them. A reader only sees keys it may view.
 */

export interface ProcKeyExpiry {
  kind: 'perm' | 'expired' | 'timed';
  /** For "timed": the time left is in [minSeconds, maxSeconds). */
  minSeconds: number;
  maxSeconds: number;
  text: string;
}

export interface ProcKey {
  serial: number;
  flags: string;
  /** Flag letters: I instantiated, R revoked, D dead, Q quota, U under construction, N negative, i invalidated. */
  instantiated: boolean;
  negative: boolean;
  usage: number;
  expiry: ProcKeyExpiry;
  perm: number;
  uid: number;
  gid: number;
  /** The type name, truncated to 9 characters by the kernel (".request_key_auth" shows as ".request_"). */
  type: string;
  /** What the type's describe() printed: for user/dns_resolver keys "DESC: LEN" once positive. */
  description: string;
}

const UNIT: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

export function parseExpiry(text: string): ProcKeyExpiry {
  if (text === 'perm') return { kind: 'perm', minSeconds: Infinity, maxSeconds: Infinity, text };
  if (text === 'expd') return { kind: 'expired', minSeconds: 0, maxSeconds: 0, text };
  const m = /^(\d+)([smhdw])$/.exec(text);
  if (!m) throw new Error(`bad /proc/keys expiry "${text}"`);
  const unit = UNIT[m[2]!]!;
  const n = Number(m[1]);
  return { kind: 'timed', minSeconds: n * unit, maxSeconds: (n + 1) * unit, text };
}

const LINE = /^([0-9a-f]{8}) (\S{7}) +(\d+) +(\S{1,4}) ([0-9a-f]{8}) +(-?\d+) +(-?\d+) (.{9}) ?(.*)$/;

/** One line of /proc/keys, or null when it does not have the kernel's shape. */
export function parseProcKeysLine(line: string): ProcKey | null {
  const m = LINE.exec(line);
  if (!m) return null;
  const flags = m[2]!;
  return {
    serial: parseInt(m[1]!, 16),
    flags,
    instantiated: flags[0] === 'I',
    negative: flags.includes('N'),
    usage: Number(m[3]),
    expiry: parseExpiry(m[4]!),
    perm: parseInt(m[5]!, 16),
    uid: Number(m[6]),
    gid: Number(m[7]),
    type: m[8]!.trimEnd(),
    description: m[9]!,
  };
}

export function parseProcKeys(text: string): ProcKey[] {
  return text.split('\n').filter((l) => l !== '').map(parseProcKeysLine).filter((k): k is ProcKey => k !== null);
}

/**
 * The .request_key_auth key's description as /proc/keys shows it:
 * "key:<target hex> pid:<requester pid> ci:<callout length>" (pid and ci only
 * while the auth key is positive).
 */
export function parseAuthDescription(description: string): { target: number; pid: number; calloutLength: number } | null {
  const m = /^key:([0-9a-f]{1,8}) pid:(\d+) ci:(\d+)$/.exec(description);
  if (!m) return null;
  return { target: parseInt(m[1]!, 16), pid: Number(m[2]), calloutLength: Number(m[3]) };
}
