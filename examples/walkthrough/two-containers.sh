#!/usr/bin/env bash
# The 5-minute walkthrough (README.md): two containers, one name, two answers,
# through the real kernel. Run as root from a checkout after `npm ci`.
#
#   bash examples/walkthrough/two-containers.sh
#
# It starts a broker on private sockets, routes dns_resolver upcalls for
# *.walkthrough names to it, builds two small containers (user, pid, mount, net,
# uts, ipc namespaces) whose /etc/hosts disagree, and runs `keyctl request2
# dns_resolver` in each. Everything it creates is removed on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cli=(node "$root/dist/src/cli/main.js")
rules=${UB_WALKTHROUGH_RULES:-/etc/request-key.d/upcall-broker-walkthrough.conf}
name="fileserver-$$.walkthrough"
work=$(mktemp -d /tmp/ub-walkthrough.XXXXXX)
chmod 755 "$work"
pids=()  # our own children: the broker first, then one unshare per container
inits=() # host pids of the containers' inits

cleanup() {
  "${cli[@]}" request-key uninstall --file "$rules" >/dev/null 2>&1 || true
  # Kill each container's init (the pid namespace goes with it) and the broker; each
  # unshare then reaps its init and exits by itself, and we reap the unshares.
  for pid in "${inits[@]}" "${pids[@]:0:1}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do { wait "$pid"; } 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "== 1. start the broker"
"${cli[@]}" serve --socket "$work/broker.sock" --state-dir "$work/state" --log-format console >"$work/broker.log" 2>&1 &
pids+=($!)
until grep -q 'ready' "$work/broker.log" 2>/dev/null; do sleep 0.1; done

echo "== 2. route the kernel's dns_resolver upcalls for *.walkthrough to it"
"${cli[@]}" request-key install --socket "$work/broker.sock" --file "$rules" --match '*.walkthrough'

echo "== 3. two containers whose /etc/hosts disagree about $name"
start_container() { # $1 = label, $2 = address
  printf '127.0.0.1 localhost\n%s %s\n' "$2" "$name" >"$work/$1-hosts"
  printf 'nameserver 127.0.0.1\n' >"$work/$1-resolv.conf"
  unshare --user --map-root-user --pid --mount --net --uts --ipc --fork --kill-child --mount-proc \
    sh -c "mount --bind $work/$1-hosts /etc/hosts && mount --bind $work/$1-resolv.conf /etc/resolv.conf && hostname $1 && touch $work/$1.ready && exec sleep 600" &
  pids+=($!)
  until [ -e "$work/$1.ready" ]; do sleep 0.05; done
  init=$(cat "/proc/$!/task/$!/children")
  init=${init%% *}
  inits+=("$init") # killing pid 1 takes the whole container with it
  echo "container $1: init is host pid $init"
  eval "init_$1=$init"
}
start_container a 192.0.2.10
start_container b 192.0.2.20

echo "== 4. the same request, through the kernel, from each container"
for c in a b; do
  init_var="init_$c"
  answer=$(nsenter -t "${!init_var}" -a keyctl session - sh -c "keyctl print \$(keyctl request2 dns_resolver $name '' @s)" 2>/dev/null)
  echo "container $c: keyctl request2 dns_resolver $name -> $answer"
done

echo "== 5. what the broker saw (its audit log)"
grep 'UpcallDispatcher: request-key ' "$work/broker.log" | cut -c1-220 || true
