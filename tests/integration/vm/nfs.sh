#!/bin/bash
# Guest side of tests/integration/vm-nfs.test.ts: knfsd (NFSv4 only) in its own network
# namespace; a container whose own DNS server alone knows nfs.<run>.test; the broker mounts
# the export for the container with `mount --for-pid`, and a file reads back. Then NFSv4
# referrals (knfsd `refer=/share2@NAME`, the same server at a second address that only the
# container's DNS knows): the client resolves NAME through a dns_resolver key when a walk
# crosses the referral.
#
#   srv netns: knfsd at 10.1.0.2 and 10.1.0.3 (container side), 10.2.0.2 and 10.2.0.3 (a
#              veth to the guest's own netns, for the last step)
#   exports:   / (fsid=0), /share2; /ctl, /ref, /fref: referrals to /share2 at
#              ctl.<run>.test and files2.<run>.test (10.1.0.3), files3.<run>.test (10.2.0.3)
#   container: own user, pid, mount and net namespaces; only its dnsmasq knows these names
#
# Prints "RESULT key value" lines; STEP lines go to stderr.
set -u
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
CLI=(node "$ROOT/dist/src/cli/main.js")
W=$(mktemp -d /tmp/ubvm.XXXXXX)
RUN=r$RANDOM$RANDOM
NAME=nfs.$RUN.test
RULE=/etc/request-key.d/ub-vm-$RUN.conf
pids=()
. "$(dirname "$0")/lib.sh"
cleanup() {
  cleanup_pids
  rm -f "$RULE"
  umount /etc/hosts 2>/dev/null
  umount -l "$W/hostnfs" 2>/dev/null
  for d in ctl ref fref ""; do umount -l "$W/export/$d" 2>/dev/null; done
}
trap cleanup EXIT
netns_of() { readlink "/proc/$1/ns/net"; }
# walk OUT PATH: a process of the container (all its namespaces) reads PATH into OUT; its
# pid as the guest sees it (the requester the kernel names) goes to OUT.pid.
walk() {
  timeout 90 nsenter -t "$C" -a sh -c 'read -r s </proc/self/stat; echo "${s%% *}" >"$1.pid"; exec cat "$2"' sh "$1" "$2" >"$1" 2>&1
  echo "$? $(tr '\n' ' ' <"$1")"
}
audits_for() { grep '"message":"request-key"' "$W/broker.log" | grep -c "\"description\":\"$1\""; }

step "modules"
modprobe nfsd && modprobe nfsv4 || { say nfs-modules missing; exit 1; }
say kernel "$(uname -r)"

step "server namespace: knfsd, NFSv4 only"
ip netns add srv
ip -n srv link set lo up
# The export is a tmpfs of its own: knfsd cannot export overlayfs, which the guest's /tmp
# is when the checkout lives under /tmp (tests/testbed/vm/guest-init.sh). Each referral is
# an export of its own, so a mount point of its own (knfsd crosses into another export only
# at a mount point).
mkdir -p "$W/export" && mount -t tmpfs -o size=16m tmpfs "$W/export"
echo "nfs-hello-$RUN" >"$W/export/hello.txt"
mkdir -p "$W/export/share2" && echo "nfs-referral-$RUN" >"$W/export/share2/hello2.txt"
exports=""
for c in 10.1.0.0/24 10.2.0.0/24; do
  exports+=" exportfs -i -o rw,no_root_squash,insecure,no_subtree_check,fsid=0 '$c:$W/export' &&"
done
fsid=1
for r in ctl:ctl.$RUN.test ref:files2.$RUN.test fref:files3.$RUN.test; do
  mkdir -p "$W/export/${r%%:*}" && mount -t tmpfs -o size=1m tmpfs "$W/export/${r%%:*}"
  for c in 10.1.0.0/24 10.2.0.0/24; do
    exports+=" exportfs -i -o rw,no_root_squash,insecure,no_subtree_check,fsid=$fsid,refer=/share2@${r#*:} '$c:$W/export/${r%%:*}' &&"
  done
  fsid=$((fsid + 1))
done
# nfsd's state (exports, grace times) is per network namespace; exportfs and rpc.mountd
# talk to the kernel through /proc/net/rpc, which follows the caller's network namespace.
# The nfsd filesystem mounted here must stay mounted while nfsd serves (its last unmount
# shuts nfsd down in this netns), so rpc.mountd keeps that mount namespace alive.
ip netns exec srv sh -c "
  mount -t nfsd nfsd /proc/fs/nfsd &&
  echo 10 >/proc/fs/nfsd/nfsv4gracetime; echo 10 >/proc/fs/nfsd/nfsv4leasetime
  $exports
  rpc.nfsd --no-udp -N 3 4 && echo nfsd-started && cat /proc/fs/nfsd/portlist &&
  exec rpc.mountd --foreground --no-udp -N 3" >"$W/nfsd.out" 2>&1 &
pids+=($!)
for i in $(seq 100); do grep -q nfsd-started "$W/nfsd.out" && break; sleep 0.2; done
say nfsd "$(tr '\n' ' ' <"$W/nfsd.out" | cut -c1-300)"

step "container"
make_container 10.1.0 "$NAME" "10.1.0.3 files2.$RUN.test ctl.$RUN.test" "10.2.0.3 files3.$RUN.test"
ip -n srv addr add 10.1.0.3/24 dev vs
nsenter -t "$C" -m mkdir /mnt/nfs /mnt/hostnfs
say container-init "$C"
say netns-host "$(netns_of 1)"
say netns-container "$(netns_of "$C")"

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

step "referral with keyutils alone (no broker rule): ctl.$RUN.test"
say ref-keyutils "$(walk "$W/ctl.out" /mnt/nfs/ctl/hello2.txt)"

step "referral with the broker's rule: the container walks into files2.$RUN.test"
"${CLI[@]}" request-key install --socket "$W/broker.sock" --types dns_resolver --match "*.$RUN.test" --file "$RULE" \
  --fallback auto --handler-log "$W/handler.log" --json >"$W/install.json" 2>&1 || { say install failed "$(cat "$W/install.json")"; exit 1; }
say ref-read "$(walk "$W/ref.out" /mnt/nfs/ref/hello2.txt)"
say ref-walker "$(cat "$W/ref.out.pid" 2>/dev/null)"
say ref-mounts "$(nsenter -t "$C" -m grep -E ' /mnt/nfs' /proc/self/mountinfo | cut -d' ' -f5,9,10 | tr '\n' ';')"

step "which netns the key landed in: the same referral, walked again from the guest's own netns"
# The container's answer expires after 30 s (dnsmasq --local-ttl). A walk from the guest's
# netns (the container's mount namespace only) within that time that asks nothing and reads
# found the key in the mount's netns cache; a key in the walker's netns would be asked for
# (route netns-host: keyutils, whose resolver does not know the name) and the read would fail.
nsenter -t "$C" -m umount /mnt/nfs/ref
n0=$(audits_for "files2.$RUN.test")
say agent-read "$( (timeout 90 nsenter -t "$C" -m cat /mnt/nfs/ref/hello2.txt 2>&1; echo "exit=$?") | tr '\n' ' ')"
say agent-new-requests $(( $(audits_for "files2.$RUN.test") - n0 ))

step "a mount made in the guest's own netns, visible in the container: the container walks its referral"
# The guest's own resolver (keyutils' handler, the fallback) knows files3 at 10.2.0.2; the
# container's DNS says 10.2.0.3. Both addresses are the same server.
printf '127.0.0.1 localhost\n10.2.0.2 files3.%s.test\n' "$RUN" >"$W/guest-hosts" && mount --bind "$W/guest-hosts" /etc/hosts
ip link add vh type veth peer name vsh
ip link set vsh netns srv
ip addr add 10.2.0.1/24 dev vh && ip link set vh up
ip -n srv addr add 10.2.0.2/24 dev vsh && ip -n srv addr add 10.2.0.3/24 dev vsh && ip -n srv link set vsh up
mkdir -p "$W/hostnfs"
# The same server by address twice from the guest's netns: once in the container's mount
# namespace (as a host agent that mounts a volume for a pod), once in the guest's own.
timeout 60 nsenter -t "$C" -m mount -t nfs4 -o vers=4.2,soft,timeo=50,retrans=2 10.2.0.2:/ /mnt/hostnfs >"$W/fmount.out" 2>&1
say foreign-mount "$? $(tr '\n' ' ' <"$W/fmount.out")"
timeout 60 mount -t nfs4 -o vers=4.2,soft,timeo=50,retrans=2 10.2.0.2:/ "$W/hostnfs" >"$W/hmount.out" 2>&1
say host-nfs-mount "$? $(tr '\n' ' ' <"$W/hmount.out")"
say foreign-read "$(walk "$W/fref.out" /mnt/hostnfs/fref/hello2.txt)"
say foreign-walker "$(cat "$W/fref.out.pid" 2>/dev/null)"
say ctr-nfs-devices "$(nsenter -t "$C" -m awk '$0 ~ / - nfs4? / {print $3, $5}' /proc/self/mountinfo | tr '\n' ';')"
say ctr-nfs-volumes "$(nsenter --net=/proc/$C/ns/net awk 'NR > 1 {print $4}' /proc/self/net/nfsfs/volumes | tr '\n' ';')"
n0=$(audits_for "files3.$RUN.test")
say host-after-foreign "$( (timeout 90 cat "$W/hostnfs/fref/hello2.txt" 2>&1; echo "exit=$?") | tr '\n' ' ')"
say host-after-foreign-new-requests $(( $(audits_for "files3.$RUN.test") - n0 ))
say host-sockets "$(ss -tan 2>&1 | grep -E ':2049\b' | tr -s ' ' | tr '\n' ';')"
umount /etc/hosts

step "who asked, and in which network namespace"
say_audits
say nfsd-log "$(tail -n 5 "$W/nfsd.out" | tr '\n' ' ')"
dmesg | grep -iE 'nfs|referral|dns' | tail -n 10 | sed 's/^/RESULT dmesg /'

umount -l "$W/hostnfs"
nsenter -t "$C" -m umount -l /mnt/hostnfs
nsenter -t "$C" -m umount -R /mnt/nfs
say done
