/*
 * ub-kernel.h: the kernel constants upcall-broker relies on that Debian 12's
 * headers (linux-libc-dev 6.1) predate.  One place for all of them; the
 * TypeScript mirror is src/ns/kernel-constants.ts and the unit test
 * tests/unit/kernel-constants.test.ts checks that the two agree.
 *
 * Format rule (the test parses it): one "#define NAME VALUE" per line, VALUE a
 * plain decimal or hex integer literal.
 */
#ifndef UB_KERNEL_H
#define UB_KERNEL_H

/* syscall numbers, x86_64 (include/uapi/asm-generic/unistd.h shares them) */
#define UB_NR_pidfd_send_signal 424
#define UB_NR_pidfd_open 434
#define UB_NR_close_range 436
#define UB_NR_pidfd_getfd 438

/* clone flags: include/uapi/linux/sched.h */
#define UB_CLONE_NEWTIME 0x00000080
#define UB_CLONE_NEWNS 0x00020000
#define UB_CLONE_NEWCGROUP 0x02000000
#define UB_CLONE_NEWUTS 0x04000000
#define UB_CLONE_NEWIPC 0x08000000
#define UB_CLONE_NEWUSER 0x10000000
#define UB_CLONE_NEWPID 0x20000000
#define UB_CLONE_NEWNET 0x40000000

/* pidfd ioctls: include/uapi/linux/pidfd.h, PIDFS_IOCTL_MAGIC 0xFF (Linux 6.11) */
#define UB_PIDFD_GET_CGROUP_NAMESPACE 0xff01
#define UB_PIDFD_GET_IPC_NAMESPACE 0xff02
#define UB_PIDFD_GET_MNT_NAMESPACE 0xff03
#define UB_PIDFD_GET_NET_NAMESPACE 0xff04
#define UB_PIDFD_GET_PID_NAMESPACE 0xff05
#define UB_PIDFD_GET_PID_FOR_CHILDREN_NAMESPACE 0xff06
#define UB_PIDFD_GET_TIME_NAMESPACE 0xff07
#define UB_PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE 0xff08
#define UB_PIDFD_GET_USER_NAMESPACE 0xff09
#define UB_PIDFD_GET_UTS_NAMESPACE 0xff0a
/* _IOWR(0xFF, 11, struct pidfd_info) with the 64-byte v0 struct (Linux 6.13) */
#define UB_PIDFD_GET_INFO 0xc040ff0b
#define UB_PIDFD_INFO_PID 0x1
#define UB_PIDFD_INFO_CREDS 0x2
#define UB_PIDFD_INFO_CGROUPID 0x4
#define UB_PIDFD_INFO_EXIT 0x8

/* nsfs ioctls: include/uapi/linux/nsfs.h, NSIO 0xb7 */
#define UB_NS_GET_USERNS 0xb701
#define UB_NS_GET_PARENT 0xb702
#define UB_NS_GET_NSTYPE 0xb703
#define UB_NS_GET_OWNER_UID 0xb704
/* _IOR(NSIO, n, int): the argument is a pid value, the result the translated pid (Linux 6.11) */
#define UB_NS_GET_PID_FROM_PIDNS 0x8004b706
#define UB_NS_GET_TGID_FROM_PIDNS 0x8004b707
#define UB_NS_GET_PID_IN_PIDNS 0x8004b708
#define UB_NS_GET_TGID_IN_PIDNS 0x8004b709

/* sockets: include/uapi/asm-generic/socket.h */
#define UB_SOL_SOCKET 1
#define UB_SO_PEERCRED 17
#define UB_SO_PEERPIDFD 77

/* misc */
#define UB_CLOSE_RANGE_CLOEXEC 0x4
#define UB_PR_SET_DUMPABLE 4
#define UB_PR_SET_PDEATHSIG 1

/* path resolution inside a peer's root: openat2(2) (Linux 5.6), statx mount ids */
#define UB_NR_openat2 437
#define UB_AT_FDCWD -100
#define UB_AT_EMPTY_PATH 0x1000
#define UB_O_PATH 0x200000
#define UB_O_CLOEXEC 0x80000
#define UB_O_DIRECTORY 0x10000
#define UB_RESOLVE_NO_MAGICLINKS 0x02
#define UB_RESOLVE_IN_ROOT 0x10
#define UB_STATX_MNT_ID 0x1000
#define UB_STATX_MNT_ID_UNIQUE 0x4000
#define UB_STATX_ATTR_MOUNT_ROOT 0x2000

/* the upcall zygote: clone3(CLONE_PIDFD) for the upcall process (Linux 5.3),
 * pidfd_send_signal(2) to its whole process group (Linux 6.9) */
#define UB_NR_clone3 435
#define UB_CLONE_PIDFD 0x1000
#define UB_PIDFD_SIGNAL_PROCESS_GROUP 0x4

/* Kernel structs this tree passes to ioctl(2) and clone3(2), in their first
 * (smallest) layouts. */
#include <stdint.h>

/* struct pidfd_info, v0 layout (64 bytes): include/uapi/linux/pidfd.h */
struct pidfd_info_v0 {
	uint64_t mask, cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	int32_t exit_code;
};
_Static_assert(sizeof(struct pidfd_info_v0) == 64, "pidfd_info v0 is 64 bytes");

/* struct clone_args, CLONE_ARGS_SIZE_VER0: include/uapi/linux/sched.h */
struct clone_args_v0 {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

#endif /* UB_KERNEL_H */
