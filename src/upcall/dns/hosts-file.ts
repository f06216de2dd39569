import { isIP } from 'node:net';

export interface HostsEntry {
  address: string;
  family: 4 | 6;
}

/**
 * /etc/hosts lookup as glibc's files backend does it: every line whose
 * canonical name or an alias matches (case-insensitive), in file order.
 * Only lines that contain the name at all are parsed: a lookup in a big
 * hosts file is one native scan, not a split and two regexes per line.
 */
export function lookupHosts(text: string, name: string): HostsEntry[] {
  const want = name.replace(/\.$/, '').toLowerCase();
  const lower = text.toLowerCase();
  const out: HostsEntry[] = [];
  if (want === '' || !lower.includes(want)) return out;
  for (const raw of lower.split('\n')) {
    if (!raw.includes(want)) continue;
    const [address, ...names] = raw.replace(/#.*$/, '').trim().split(/\s+/);
    if (address === undefined || !names.includes(want)) continue;
    const family = isIP(address);
    if (family === 0) continue;
    out.push({ address: normalise(address, family as 4 | 6), family: family as 4 | 6 });
  }
  return out;
}

/** inet_ntop's form, so the payload matches keyutils byte for byte. */
function normalise(address: string, family: 4 | 6): string {
  if (family === 4) return address;
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}
