#!/bin/sh
# NodeUnpublishVolume: unmount in the pod's mount namespace, then drop the registration.
# (The registration turns "unmounted" within a second on its own; unregistering frees it.)
# Usage: node-unpublish.sh POD_PID TARGET REGISTRATION_ID
set -eu
pod_pid=$1 target=$2 id=$3
socket=${UPCALL_BROKER_SOCKET:-/run/upcall-broker/broker.sock}
nsenter --target "$pod_pid" --mount umount "$target"
upcall-broker unregister --socket "$socket" "$id" --json
