# Shared by the guest-side scripts of the real-filesystem tests (tests/integration/vm/*.sh):
# sourced, never run. Each script sets W (its work directory) and appends to pids.

say() { echo "RESULT $*"; }
step() { echo "STEP $(date +%T) $*" >&2; }
cleanup_pids() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; }

# make_container SUBNET NAME: a container with its own user, pid, mount and network
# namespaces (init: sleep, pid in C; its /mnt a tmpfs), linked by a veth pair to the
# server namespace "srv" (SUBNET.1 inside, SUBNET.2 on the server side), whose
# resolv.conf points to its own dnsmasq (pid in D), which alone knows NAME at SUBNET.2
# (from $W/ctr-dns-hosts; rewrite it and `kill -HUP $D` to move the name). Each further
# argument is one more line of that file ("ADDRESS NAME...").
make_container() {
  local net=$1 name=$2 u i
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:2\n' >"$W/ctr-resolv"
  printf '127.0.0.1 localhost\n' >"$W/ctr-hosts"
  printf '%s.2 %s\n' "$net" "$name" >"$W/ctr-dns-hosts"
  shift 2; [ $# -eq 0 ] || printf '%s\n' "$@" >>"$W/ctr-dns-hosts"
  unshare --user --map-root-user --pid --fork --mount --net --propagation private --kill-child \
    sh -c "mount -t tmpfs ctr /mnt && mount --bind $W/ctr-resolv /etc/resolv.conf && mount --bind $W/ctr-hosts /etc/hosts && exec sleep 100000" &
  u=$!; pids+=($u)
  for i in $(seq 100); do C=$(cat /proc/$u/task/$u/children 2>/dev/null | tr -d ' '); [ -n "$C" ] && [ "$(cat /proc/$C/comm)" = sleep ] && break; sleep 0.1; done
  pids+=($C)
  ip link add vc type veth peer name vs
  ip link set vc netns "$C"
  ip link set vs netns srv
  nsenter --net=/proc/$C/ns/net sh -c "ip link set lo up; ip addr add $net.1/24 dev vc; ip link set vc up"
  ip -n srv addr add "$net.2/24" dev vs; ip -n srv link set vs up
  nsenter --net=/proc/$C/ns/net dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$W/ctr-dns-hosts" \
    --listen-address=127.0.0.1 --bind-interfaces --local-ttl=30 --user=root --pid-file= -C /dev/null >"$W/dnsmasq.out" 2>&1 &
  D=$!; pids+=($D)
}

# start_broker: the broker on $W/broker.sock, in the guest's initial namespaces; log in $W/broker.log.
start_broker() {
  local i
  "${CLI[@]}" serve --socket "$W/broker.sock" --tenant-socket "$W/tenant.sock" --state-dir "$W/state" >"$W/broker.log" 2>&1 &
  pids+=($!)
  for i in $(seq 1200); do grep -q '"message":"ready"' "$W/broker.log" 2>/dev/null && return 0; sleep 0.1; done
  say broker "not ready after 120 s"; return 1
}

# say_audits: each request-key audit line of the broker ("audit"), the requester's comm, flags
# and netns while it still lives ("requester"), and the handler's log ("handler").
say_audits() {
  local line pid
  grep '"message":"request-key"' "$W/broker.log" | while IFS= read -r line; do
    say audit "$line"
    pid=$(sed -n 's/.*"requesterPid":\([0-9]*\).*/\1/p' <<<"$line")
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] && say requester "$pid $(cat /proc/$pid/comm) flags=$(awk '{print $9}' /proc/$pid/stat) net=$(readlink /proc/$pid/ns/net)"
  done
  [ -f "$W/handler.log" ] && sed 's/^/RESULT handler /' "$W/handler.log"
}
