#!/bin/busybox sh
# /init of the namespace test VM's initramfs (built by kernels.ts): load the
# modules the root needs, mount this machine's root (virtio-9p, read-only) under
# a tmpfs overlay, and switch_root into it to run the guest init of the checkout.
# Parameters come on the kernel command line: ub.init= (the guest init's path),
# ub.run= (the host's run directory, shared writable as mount tag "ubrun").
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() { echo "ub-vm initramfs: $*" >/dev/console; echo o >/proc/sysrq-trigger; sleep 60; }
arg() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" /proc/cmdline | head -n1; }
for m in $(cat /modules/order); do insmod "/modules/$m" || fail "insmod $m"; done
# cache=loose: the root is read-only and does not change under a test run; without a
# cache every open/stat is a round trip, and Node's ES module loading is 10x slower.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /lower || fail "mount 9p root"
mount -t tmpfs -o size=4g,mode=755 tmpfs /rw || fail "tmpfs"
mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail "overlay"
run=$(arg ub.run)
mkdir -p "/newroot$run" "/newroot/lib/modules/$(uname -r)"
# The run directory is the only writable window onto the host (no cache: the host reads it live).
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none,msize=512000 ubrun "/newroot$run" || fail "mount run dir"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 ubmods "/newroot/lib/modules/$(uname -r)" || fail "mount modules"
exec switch_root /newroot /bin/bash "$(arg ub.init)" "$run"
