import { isIP } from 'node:net';

export interface HostsEntry {
  address: string;
  family: 4 | 6;
}

/**
 * /etc/hosts lookup as glibc's files backend does it: every line whose
 * canonical name or an alias matches (case-insensitive), in file order.
 * Only lines that contain the name at all are parsed, found by native
 * searches: a lookup in a big hosts file is neither a split of the whole file
 * nor a regex per line.
 */
export function lookupHosts(text: string, name: string): HostsEntry[] {
  const want = name.replace(/\.$/, '').toLowerCase();
  const out: HostsEntry[] = [];
  if (want === '') return out;
  const lower = text.toLowerCase();
  for (let at = lower.indexOf(want); at >= 0;) {
    const start = lower.lastIndexOf('\n', at) + 1;
    let end = lower.indexOf('\n', at);
    if (end < 0) end = lower.length;
    const entry = parseLine(lower.slice(start, end), want);
    if (entry) out.push(entry);
    at = lower.indexOf(want, end); // the next line that contains the name
  }
  return out;
}

/** One line of the file (lower case): its address if `want` is among its names. */
function parseLine(line: string, want: string): HostsEntry | null {
  const [address, ...names] = line.replace(/#.*$/, '').trim().split(/\s+/);
  if (address === undefined || !names.includes(want)) return null;
  const family = isIP(address);
  if (family === 0) return null;
  return { address: normalise(address, family as 4 | 6), family: family as 4 | 6 };
}

/** inet_ntop's form, so the payload matches keyutils byte for byte. */
function normalise(address: string, family: 4 | 6): string {
  if (family === 4) return address;
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}
