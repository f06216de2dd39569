#!/bin/bash
# Guest side of tests/integration/vm-cifs.test.ts: runs as root inside a namespace
# test VM (no network device; every network here is a namespace this script makes).
#
#   srv netns: smbd serving //files.<run>.test/share at 10.1.0.2, later 10.1.0.3
#   container: own user, pid, mount and net namespaces; dnsmasq in its netns is the
#              only resolver that knows files.<run>.test; its resolv.conf points there
#   broker:    in the guest's initial namespaces, with a request-key rule for *.<run>.test
#
# Prints "RESULT key value" lines for the host side to check; STEP lines go to stderr.
set -u
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
CLI=(node "$ROOT/dist/src/cli/main.js")
W=$(mktemp -d /tmp/ubvm.XXXXXX)
RUN=r$RANDOM$RANDOM
NAME=files.$RUN.test
RULE=/etc/request-key.d/ub-vm-$RUN.conf
pids=()
. "$(dirname "$0")/lib.sh"
cleanup() {
  cleanup_pids
  rm -f "$RULE"
}
trap cleanup EXIT
netns_of() { readlink "/proc/$1/ns/net"; }

step "modules"
modprobe cifs || { say cifs-module missing; exit 1; }
say kernel "$(uname -r)"

step "server namespace"
ip netns add srv
ip -n srv link set lo up
mkdir -p "$W/share" "$W/smb"/{lock,state,cache,private,run,ncalrpc}
echo "hello-$RUN" >"$W/share/hello.txt"
cat >"$W/smb.conf" <<CONF
[global]
  server role = standalone server
  map to guest = Bad User
  smb ports = 445
  lock directory = $W/smb/lock
  state directory = $W/smb/state
  cache directory = $W/smb/cache
  private dir = $W/smb/private
  pid directory = $W/smb/run
  ncalrpc dir = $W/smb/ncalrpc
  log file = $W/smb/log
  load printers = no
  disable spoolss = yes
  server min protocol = SMB2
[share]
  path = $W/share
  guest ok = yes
  read only = no
  force user = root
CONF
ip netns exec srv smbd --foreground --no-process-group -s "$W/smb.conf" </dev/null >"$W/smbd.out" 2>&1 &
pids+=($!)

step "container"
make_container 10.1.0 "$NAME"
nsenter -t "$C" -m mkdir /mnt/share
say container-init "$C"
say netns-host "$(netns_of 1)"
say netns-container "$(netns_of "$C")"

step "negative control: the guest's own namespaces do not know $NAME"
mkdir -p /mnt/hostside
if mount -t cifs "//$NAME/share" /mnt/hostside -o guest,vers=3.0 2>"$W/host-mount.err"; then
  say host-mount ok; umount /mnt/hostside
else
  say host-mount failed "$(tr '\n' ' ' <"$W/host-mount.err")"
fi

step "broker"
start_broker || exit 1
"${CLI[@]}" request-key install --socket "$W/broker.sock" --types dns_resolver --match "*.$RUN.test" --file "$RULE" \
  --fallback none --handler-log "$W/handler.log" --json >"$W/install.json" 2>&1 || { say install failed "$(cat "$W/install.json")"; exit 1; }

step "mount --for-pid"
"${CLI[@]}" mount --socket "$W/broker.sock" --for-pid "$C" -t cifs -o guest,vers=3.0 "//$NAME/share" /mnt/share --json >"$W/mount.json" 2>&1
say mount-exit $?
say mount-json "$(tr -d '\n' <"$W/mount.json")"
say read-1 "$(nsenter -t "$C" -m cat /mnt/share/hello.txt 2>&1)"

step "reconnect: the server moves, only the container's DNS knows"
echo "moved-$RUN" >"$W/share/moved.txt"
printf '10.1.0.3 %s\n' "$NAME" >"$W/ctr-dns-hosts"; kill -HUP "$D"
# Delete first: removing a subnet's primary address also removes its secondaries (no promote_secondaries).
ip -n srv addr del 10.1.0.2/24 dev vs
ip -n srv addr add 10.1.0.3/24 dev vs
nsenter --net=/proc/$C/ns/net ss -K dst 10.1.0.2 >"$W/ss.out" 2>&1
say ss-kill "$? $(tr '\n' ' ' <"$W/ss.out" | cut -c1-200)"
t0=$(date +%s)
# A read may fail while the mount reconnects ("Host is down") or block: try again every
# 2 s, each attempt in the background, for up to READ_WAIT seconds.
out="no attempt finished"
while [ $(( $(date +%s) - t0 )) -lt "${READ_WAIT:-60}" ]; do
  nsenter -t "$C" -m cat /mnt/share/moved.txt >"$W/read-2.out" 2>&1 &
  r=$!
  for i in $(seq 20); do kill -0 "$r" 2>/dev/null || break; sleep 1; done
  if kill -0 "$r" 2>/dev/null; then out="blocked"; continue; fi
  wait "$r" && { out=$(cat "$W/read-2.out"); break; }
  out=$(cat "$W/read-2.out"); say read-2-attempt "$out"
  sleep 2
done
say read-2 "$out"
say reconnect-seconds $(( $(date +%s) - t0 ))
dmesg | grep -iE 'cifs|smb' | tail -n 15 | sed 's/^/RESULT dmesg /'
# Where the reconnecting socket is: the container's netns (the mount's) or the guest's own.
say sockets-host "$(ss -tan 2>&1 | grep -E ':445\b' | tr -s ' ' | tr '\n' ';')"
say sockets-container "$(nsenter --net=/proc/$C/ns/net ss -tan 2>&1 | grep -E ':445\b' | tr -s ' ' | tr '\n' ';')"
say server-listen "$(ip netns exec srv ss -tln 2>&1 | grep -E ':445\b' | tr -s ' ' | tr '\n' ';')"
say reach-new "$(nsenter --net=/proc/$C/ns/net timeout 3 bash -c 'echo >/dev/tcp/10.1.0.3/445' 2>&1 && echo ok)"
grep -E '^(Number of|[0-9]+\)|Server|Status|IP addr|.*Hostname|.*ConnectionId)' /proc/fs/cifs/DebugData 2>/dev/null | head -20 | sed 's/^/RESULT cifs-debug /'

step "who asked, and in which network namespace"
say_audits

step "netns rule: a user-namespaced process in the guest's netns with its own /etc/hosts"
printf '127.0.0.1 localhost\n10.66.6.6 poison.%s.test\n' "$RUN" >"$W/poison-hosts"
p=$(unshare -Urpm --fork sh -c "mount --bind $W/poison-hosts /etc/hosts && keyctl session - sh -c 'k=\$(keyctl request2 dns_resolver poison.$RUN.test @s) && keyctl pipe \$k'" 2>&1)
say poison-userns "$(tr '\0\n' '  ' <<<"$p")"
h=$(keyctl session - sh -c "k=\$(keyctl request2 dns_resolver poison.$RUN.test @s) && keyctl pipe \$k" 2>&1)
say poison-host "$(tr '\0\n' '  ' <<<"$h")"
grep '"message":"request-key"' "$W/broker.log" | grep "poison.$RUN" | sed 's/^/RESULT poison-audit /'

step "unmount"
nsenter -t "$C" -m umount /mnt/share
sleep 1.5
id=$(sed -n 's/.*"id": *"\(r-[0-9a-f]*\)".*/\1/p' "$W/mount.json" | head -1)
say after-umount "$("${CLI[@]}" show "$id" --socket "$W/broker.sock" --json | tr -d '\n')"
say done
