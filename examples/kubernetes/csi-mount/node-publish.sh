#!/bin/sh
# A CSI node plugin's NodePublishVolume for an SMB or NFS share, the upcall-broker way.
#
# Kubelet calls the plugin (a privileged DaemonSet pod with hostPID) to mount a share
# into a pod. CIFS and NFS need CAP_SYS_ADMIN in the initial user namespace, so the
# pod cannot mount them itself; a plugin that mounts from its own namespaces resolves
# the server with the node's DNS (kubernetes-csi/csi-driver-smb#600, k3s-io/k3s#1397),
# and every later reconnect of the mount is resolved by the host as well.
#
# Instead the plugin asks the broker to mount for the pod:
#   - mount(8) runs in the pod's mount and network namespaces (the pod's resolv.conf and
#     cluster DNS, the pod's routes), with the node's privileges;
#   - the mount is registered for the pod's context, so the kernel's later requests for
#     it (a CIFS reconnect from cifsd, which runs in the host's namespaces) are answered
#     inside the pod;
#   - the registration turns "unmounted" when the mount goes away.
#
# Usage: node-publish.sh POD_PID SOURCE TARGET FSTYPE [OPTIONS]
#   POD_PID   a process of the pod's sandbox (its pause process), as the node sees it:
#             e.g. `crictl inspectp -o json POD_ID | jq .info.pid`
#   SOURCE    //files.team.svc.cluster.local/share  or  nfs.team.svc.cluster.local:/export
#   TARGET    the mount point as the pod's mount namespace sees it
set -eu
pod_pid=$1 source=$2 target=$3 fstype=$4 options=${5:-}
socket=${UPCALL_BROKER_SOCKET:-/run/upcall-broker/broker.sock}

set -- mount --socket "$socket" --for-pid "$pod_pid" -t "$fstype"
[ -n "$options" ] && set -- "$@" -o "$options"
# Prints the registration: {"id": "r-...", "state": "live", "fstype", "source", "context": {"initPid", ...}}.
# On failure: {"error": {"code": "E_MOUNT_FAILED", "message": "<mount.cifs's own message>"}}, exit 16.
exec upcall-broker "$@" "$source" "$target" --json
