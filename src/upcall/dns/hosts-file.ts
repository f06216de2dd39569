import { isIP } from 'node:net';

export interface HostsEntry {
  address: string;
  family: 4 | 6;
}

/**
 * /etc/hosts lookup as glibc's files backend does it: every line whose
 * canonical name or an alias matches (case-insensitive), in file order.
 */
export function lookupHosts(text: string, name: string): HostsEntry[] {
  const want = name.replace(/\.$/, '').toLowerCase();
  const out: HostsEntry[] = [];
  for (const raw of text.split('\n')) {
    const [address, ...names] = raw.replace(/#.*$/, '').trim().split(/\s+/);
    if (address === undefined || names.length === 0) continue;
    const family = isIP(address);
    if (family === 0) continue;
    if (names.some((n) => n.toLowerCase() === want)) out.push({ address: normalise(address, family as 4 | 6), family: family as 4 | 6 });
  }
  return out;
}

/** inet_ntop's form, so the payload matches keyutils byte for byte. */
function normalise(address: string, family: 4 | 6): string {
  if (family === 4) return address;
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}
