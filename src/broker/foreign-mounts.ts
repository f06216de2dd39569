/**
 * Does a requester's mount namespace show an NFS mount made in another network
 * namespace? An NFS client resolves a referral's server name (dns_resolver) in
 * the network namespace of the mount's RPC client (nfs_d_automount), whoever
 * walks into the referral, and the key is cached there. Measured in the
 * namespace test VMs on 6.1 and 6.12 (docs/request-key.md, "Kernel behaviour";
 * docs/walk-rule.md, case 8): a container's process that walked a referral on a
 * mount made in the host's network namespace had its own answer cached for the
 * host. With such a mount in view, the requester's network namespace does not
 * say where the key lands.
 */
import { readFileSync } from 'node:fs';

/** The devices ("major:minor") of the nfs and nfs4 mounts in a mountinfo text. */
export function nfsMountDevices(mountinfo: string): Set<string> {
  const devs = new Set<string>();
  for (const line of mountinfo.split('\n')) {
    // "36 35 0:52 / /mnt/nfs rw,relatime shared:1 - nfs4 host:/ rw,...": optional fields end at "-";
    // mount points have their spaces escaped (\040), so the fields split on spaces.
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0) continue;
    const fstype = f[sep + 1];
    if ((fstype === 'nfs' || fstype === 'nfs4') && /^\d+:\d+$/.test(f[2] ?? '')) devs.add(f[2]!);
  }
  return devs;
}

/** The devices of the NFS volumes whose clients live in a network namespace (its /proc/net/nfsfs/volumes). */
export function nfsVolumeDevices(volumes: string): Set<string> {
  const devs = new Set<string>();
  for (const line of volumes.split('\n')) {
    // "NV SERVER   PORT DEV          FSID ... FSC", then "v4 0a010002  801 0:52  ..."
    const f = line.trim().split(/\s+/);
    if (/^v\d+$/.test(f[0] ?? '') && /^\d+:\d+$/.test(f[3] ?? '')) devs.add(f[3]!);
  }
  return devs;
}

/**
 * True when some NFS mount of `mountinfo` is not among `volumes` (null: unreadable,
 * e.g. no nfs module: then any NFS mount counts as foreign).
 */
export function hasForeignNfsMount(mountinfo: string, volumes: string | null): boolean {
  const mounts = nfsMountDevices(mountinfo);
  if (mounts.size === 0) return false;
  const local = volumes === null ? new Set<string>() : nfsVolumeDevices(volumes);
  return [...mounts].some((d) => !local.has(d));
}

const readOrNull = (path: string): string | null => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
};

/**
 * For a live pid (the caller checks its pidfd alive afterwards): its mount
 * namespace's mountinfo against its network namespace's NFS volumes. An
 * unreadable mountinfo counts as foreign (the cautious answer).
 */
export function readForeignNfsMount(pid: number): boolean {
  const mountinfo = readOrNull(`/proc/${pid}/mountinfo`);
  if (mountinfo === null) return true;
  if (nfsMountDevices(mountinfo).size === 0) return false;
  return hasForeignNfsMount(mountinfo, readOrNull(`/proc/${pid}/net/nfsfs/volumes`));
}
