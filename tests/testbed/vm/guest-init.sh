#!/bin/bash
# pid 1 of a namespace test VM (tests/testbed/vm), after the initramfs switched
# into this machine's root under a tmpfs overlay. $1 is the run directory shared
# with the host: it holds `command` (argv, NUL-separated), `cwd`, `env` (NUL-
# separated K=V) and receives `status`. The command's stdout and stderr go to the
# serial ports the host streams (ttyS1, ttyS2); the kernel console is ttyS0.
run=$1
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH HOME=/root LANG=C.UTF-8 TERM=dumb
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts && ln -sf pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
# A fresh /tmp, unless the checkout lives there (the overlay keeps /tmp writable either way).
case "$(cat "$run/cwd")/" in /tmp/*) ;; *) mount -t tmpfs -o mode=1777 tmpfs /tmp ;; esac
mount -t tmpfs -o mode=755 tmpfs /run
# The same cgroup layout as the host's: v1 controllers beside cgroup2 where the
# kernel has them (the testbed makes a cgroup in every mounted hierarchy).
mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
  mkdir -p /sys/fs/cgroup/$c && { mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c 2>/dev/null || rmdir /sys/fs/cgroup/$c; }
done
mkdir -p /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
ip link set lo up
hostname ub-vm
# dns_resolver is a module in Debian's kernels, and nothing loads it on demand:
# until it is loaded, `keyctl request2 dns_resolver` fails with ENOKEY and no upcall.
modprobe dns_resolver
exec </dev/null >/dev/ttyS1 2>/dev/ttyS2
stty -F /dev/ttyS1 raw -echo; stty -F /dev/ttyS2 raw -echo
while IFS= read -r -d '' kv; do export "$kv"; done <"$run/env"
export UB_VM_KERNEL=$(uname -r)
mapfile -d '' argv <"$run/command"
cd "$(cat "$run/cwd")" && "${argv[@]}"
status=$?
sync
echo "$status" >"$run/status"
echo o >/proc/sysrq-trigger
sleep 30
