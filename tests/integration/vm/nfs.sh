#!/bin/bash
# Guest side of tests/integration/vm-nfs.test.ts: knfsd (NFSv4 only) in its own network
# namespace; a container whose own DNS server alone knows nfs.<run>.test; the broker mounts
# the export for the container with `mount --for-pid`, and a file reads back.
# Prints "RESULT key value" lines; STEP lines go to stderr.
set -u
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
CLI=(node "$ROOT/dist/src/cli/main.js")
W=$(mktemp -d /tmp/ubvm.XXXXXX)
RUN=r$RANDOM$RANDOM
NAME=nfs.$RUN.test
pids=()
. "$(dirname "$0")/lib.sh"
trap 'cleanup_pids; umount -l "$W/export" 2>/dev/null' EXIT

step "modules"
modprobe nfsd && modprobe nfsv4 || { say nfs-modules missing; exit 1; }
say kernel "$(uname -r)"

step "server namespace: knfsd, NFSv4 only"
ip netns add srv
ip -n srv link set lo up
# The export is a tmpfs of its own: knfsd cannot export overlayfs, which the guest's /tmp
# is when the checkout lives under /tmp (tests/testbed/vm/guest-init.sh).
mkdir -p "$W/export" && mount -t tmpfs -o size=16m tmpfs "$W/export"
echo "nfs-hello-$RUN" >"$W/export/hello.txt"
# nfsd's state (exports, grace times) is per network namespace; exportfs and rpc.mountd
# talk to the kernel through /proc/net/rpc, which follows the caller's network namespace.
# The nfsd filesystem mounted here must stay mounted while nfsd serves (its last unmount
# shuts nfsd down in this netns), so rpc.mountd keeps that mount namespace alive.
ip netns exec srv sh -c "
  mount -t nfsd nfsd /proc/fs/nfsd &&
  echo 10 >/proc/fs/nfsd/nfsv4gracetime; echo 10 >/proc/fs/nfsd/nfsv4leasetime
  exportfs -i -o rw,no_root_squash,insecure,no_subtree_check,fsid=0 '10.1.0.0/24:$W/export' &&
  rpc.nfsd --no-udp -N 3 4 && echo nfsd-started && cat /proc/fs/nfsd/portlist &&
  exec rpc.mountd --foreground --no-udp -N 3" >"$W/nfsd.out" 2>&1 &
pids+=($!)
for i in $(seq 100); do grep -q nfsd-started "$W/nfsd.out" && break; sleep 0.2; done
say nfsd "$(tr '\n' ' ' <"$W/nfsd.out" | cut -c1-300)"

step "container"
make_container 10.1.0 "$NAME"
nsenter -t "$C" -m mkdir /mnt/nfs
say container-init "$C"

step "the guest's own namespaces do not know $NAME"
mkdir -p /mnt/hostside
if timeout 20 mount -t nfs4 -o vers=4.2,soft,timeo=10,retrans=1 "$NAME:/" /mnt/hostside 2>"$W/host-mount.err"; then
  say host-mount ok; umount /mnt/hostside
else
  say host-mount failed "$(tr '\n' ' ' <"$W/host-mount.err")"
fi

step "broker"
start_broker || exit 1

step "mount --for-pid"
"${CLI[@]}" mount --socket "$W/broker.sock" --for-pid "$C" -t nfs4 -o vers=4.2,soft,timeo=50,retrans=2 "$NAME:/" /mnt/nfs --timeout-ms 120000 --json >"$W/mount.json" 2>&1
say mount-exit $?
say mount-json "$(tr -d '\n' <"$W/mount.json")"
say read-1 "$(timeout 60 nsenter -t "$C" -m cat /mnt/nfs/hello.txt 2>&1)"
say server-listen "$(ip netns exec srv ss -tln 2>&1 | tr -s ' ' | tr '\n' ';')"
say nfsd-log "$(tail -n 5 "$W/nfsd.out" | tr '\n' ' ')"
grep '"message":"request-key"' "$W/broker.log" | sed 's/^/RESULT audit /'
nsenter -t "$C" -m umount /mnt/nfs
say done
