/**
 * The shell stages that turn a freshly spawned process into a container.
 * They are passed inline with `sh -c` (no script files to get permissions
 * wrong on), and take their parameters as positional arguments, never by
 * string interpolation.
 *
 *   host ── spawn ──> unshare --user --keep-caps sh -c STAGE1      (process "A")
 *                       │ prints "userns"; host writes uid_map/gid_map; host sends "go"
 *                       └ exec setpriv (become uid 0 of the new userns)
 *                           exec unshare --pid --mount --net ... --fork
 *                             └ child = pid 1: sh -c INIT_SH  → exec node init.js
 */

/** Namespaces other than user that every container gets (all owned by its user ns). */
export const UNSHARE_NS_ARGS: readonly string[] = [
  '--pid',
  '--mount',
  '--net',
  '--uts',
  '--ipc',
  '--cgroup',
  // /proc must show the new pid namespace, or `ps`, /proc/self and friends lie.
  '--mount-proc',
  // Our bind mounts must not leak back to the host.
  '--propagation=private',
  // If A dies (host killed it), take the init with it: PR_SET_PDEATHSIG.
  // (Implies --fork: the forked child is the namespace's pid 1.)
  '--kill-child',
];

/**
 * Runs in process A right after unshare(CLONE_NEWUSER). A is still host
 * root's kuid 0, which the new namespace does not map, so it is "nobody"
 * in there; it only holds capabilities because `unshare --keep-caps` made
 * them ambient (otherwise exec would have dropped them).
 *
 * Once the host has written the maps, setpriv switches to uid/gid 0 of the
 * namespace, i.e. the unprivileged host base uid, as real runtimes do, and
 * clears the ambient set so container processes get ordinary root
 * semantics (ambient caps would survive a later setuid to a non-root uid).
 *
 * $1 = INIT_SH text, remaining args are passed on to INIT_SH.
 */
export const STAGE1_SH = `
echo userns
IFS= read -r go || exit 70
[ "$go" = go ] || exit 71
init_sh=$1; shift
exec setpriv --reuid=0 --regid=0 --clear-groups --ambient-caps=-all -- \\
  unshare ${UNSHARE_NS_ARGS.join(' ')} -- /bin/sh -c "$init_sh" init "$@"
`;

/**
 * pid 1 of the new pid namespace, root of the container. Sets up what needs
 * no node, then execs node init.js (keeping pid 1), through an optional exec
 * prefix (the unusual init's UNUSUAL_SH and exec chain, see unusual.ts).
 * $1 DIR, $2 hostname, $3 node binary, $4 init.js, $5... addresses for eth0,
 * then `--` and the prefix argv (possibly empty).
 *
 * eth0 exists because glibc's getaddrinfo() with AI_ADDRCONFIG (its default
 * when called without hints, and what `getent ahosts` uses) returns nothing
 * for IPv4/IPv6 unless a non-loopback address of that family is configured:
 * with only lo, every name lookup would fail. The kernel here has no dummy
 * driver, so eth0 is a veth whose peer also stays inside: no route leads
 * out of the namespace. IPv6 addresses are added with nodad so they are
 * usable at once instead of "tentative".
 */
export const INIT_SH = `
set -eu
dir=$1 name=$2 node=$3 init_js=$4
shift 4
step() { echo "init.sh: $*" >&2; }
step bind-mount hosts;       mount --bind "$dir/hosts" /etc/hosts
step bind-mount resolv.conf; mount --bind "$dir/resolv.conf" /etc/resolv.conf
step loopback;               ip link set lo up
step eth0;                   ip link add eth0 type veth peer name eth0-peer
while [ $# -gt 0 ]; do
  addr=$1; shift
  [ "$addr" = -- ] && break
  case $addr in *:*) ip addr add "$addr" dev eth0 nodad ;; *) ip addr add "$addr" dev eth0 ;; esac
done
ip link set eth0-peer up; ip link set eth0 up
step hostname;               hostname "$name"
step exec init.js;           exec "$@" "$node" "$init_js" "$dir"
`;

/**
 * First link of an unusual init's exec chain (unusual.ts), still pid 1 and
 * still full root of the container: what needs privileges or a shell.
 * Options, in this order, then `--` and the rest of the chain:
 *   --chroot ROOT     mount a tmpfs on ROOT (in the container's mount ns only)
 *   --marker FILE     create ROOT/FILE: proof that "/" is the chroot
 *   --cwd DIR         create ROOT/DIR, init's cwd (the chain cds there)
 *   --bind PATH       PATH at ROOT/PATH: symlinks recreated, directories
 *                     rbind-mounted (submounts such as /etc/hosts come along),
 *                     except a directory that holds ROOT itself, bound
 *                     non-recursively so the chroot does not contain itself
 *   --oom-score-adj N raising it needs no privilege (lowering would)
 *   --umask MASK      set last, so the setup itself is not affected
 *   --hold            print "hold", wait for "go": the host moves pid 1 into
 *                     its cgroups meanwhile, before init forks anything
 * With --chroot, ROOT/proc gets the container's procfs.
 */
export const UNUSUAL_SH = `
set -eu
step() { echo "unusual.sh: $*" >&2; }
bind_into() {
  if [ -L "$2" ]; then
    mkdir -p "$1$(dirname "$2")"; ln -s "$(readlink "$2")" "$1$2"
  elif [ -d "$2" ]; then
    mkdir -p "$1$2"
    # ROOT inside DIR: not recursive (ROOT would hold a copy of itself), unless DIR has submounts
    # locked by the user namespace, which only a recursive bind may take (EINVAL otherwise): a
    # namespace test VM's /tmp when the checkout, and the VM's run directory, live under it.
    case $1/ in
      "$2"/*) mount --bind "$2" "$1$2" 2>/dev/null || { step "bind $2: locked submounts, recursive"; mount --rbind "$2" "$1$2"; } ;;
      *) mount --rbind "$2" "$1$2" ;;
    esac
  fi
}
root= mask= hold=
while [ $# -gt 0 ]; do
  case $1 in
    --chroot) root=$2; step "tmpfs on $root"; mkdir -p "$root"; mount -t tmpfs -o mode=755 ub-chroot "$root" ;;
    --marker) : > "$root$2" ;;
    --cwd) mkdir -p "$root$2" ;;
    --bind) step "bind $2"; bind_into "$root" "$2" ;;
    --oom-score-adj) step oom_score_adj; echo "$2" > /proc/self/oom_score_adj ;;
    --umask) mask=$2 ;;
    --hold) hold=1; shift; continue ;;
    --) shift; break ;;
    *) step "unknown option $1"; exit 64 ;;
  esac
  shift 2
done
if [ -n "$root" ]; then step proc; mkdir -p "$root/proc"; mount -t proc proc "$root/proc"; fi
if [ -n "$hold" ]; then
  step "hold for the host"; echo hold
  IFS= read -r go || exit 72
  [ "$go" = go ] || exit 73
fi
if [ -n "$mask" ]; then umask "$mask"; fi
step "exec $1"; exec "$@"
`;
