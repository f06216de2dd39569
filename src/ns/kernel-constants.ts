/**
 * TypeScript mirror of native-bindings/include/ub-kernel.h (the C side's single header
 * of kernel constants newer than Debian 12's headers). tests/unit/kernel-constants.test.ts
 * parses the header and fails if the two disagree.
 */
export const K = {
  UB_NR_pidfd_send_signal: 424,
  UB_NR_pidfd_open: 434,
  UB_NR_close_range: 436,
  UB_NR_pidfd_getfd: 438,

  UB_CLONE_NEWTIME: 0x00000080,
  UB_CLONE_NEWNS: 0x00020000,
  UB_CLONE_NEWCGROUP: 0x02000000,
  UB_CLONE_NEWUTS: 0x04000000,
  UB_CLONE_NEWIPC: 0x08000000,
  UB_CLONE_NEWUSER: 0x10000000,
  UB_CLONE_NEWPID: 0x20000000,
  UB_CLONE_NEWNET: 0x40000000,

  UB_PIDFD_GET_CGROUP_NAMESPACE: 0xff01,
  UB_PIDFD_GET_IPC_NAMESPACE: 0xff02,
  UB_PIDFD_GET_MNT_NAMESPACE: 0xff03,
  UB_PIDFD_GET_NET_NAMESPACE: 0xff04,
  UB_PIDFD_GET_PID_NAMESPACE: 0xff05,
  UB_PIDFD_GET_PID_FOR_CHILDREN_NAMESPACE: 0xff06,
  UB_PIDFD_GET_TIME_NAMESPACE: 0xff07,
  UB_PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE: 0xff08,
  UB_PIDFD_GET_USER_NAMESPACE: 0xff09,
  UB_PIDFD_GET_UTS_NAMESPACE: 0xff0a,
  UB_PIDFD_GET_INFO: 0xc040ff0b,
  UB_PIDFD_INFO_PID: 0x1,
  UB_PIDFD_INFO_CREDS: 0x2,
  UB_PIDFD_INFO_CGROUPID: 0x4,
  UB_PIDFD_INFO_EXIT: 0x8,

  UB_NS_GET_USERNS: 0xb701,
  UB_NS_GET_PARENT: 0xb702,
  UB_NS_GET_NSTYPE: 0xb703,
  UB_NS_GET_OWNER_UID: 0xb704,
  UB_NS_GET_PID_FROM_PIDNS: 0x8004b706,
  UB_NS_GET_TGID_FROM_PIDNS: 0x8004b707,
  UB_NS_GET_PID_IN_PIDNS: 0x8004b708,
  UB_NS_GET_TGID_IN_PIDNS: 0x8004b709,

  UB_SOL_SOCKET: 1,
  UB_SO_PEERCRED: 17,
  UB_SO_PEERPIDFD: 77,

  UB_CLOSE_RANGE_CLOEXEC: 0x4,
  UB_PR_SET_DUMPABLE: 4,
  UB_PR_SET_PDEATHSIG: 1,

  UB_NR_openat2: 437,
  UB_AT_FDCWD: -100,
  UB_AT_EMPTY_PATH: 0x1000,
  UB_O_PATH: 0x200000,
  UB_O_CLOEXEC: 0x80000,
  UB_O_DIRECTORY: 0x10000,
  UB_RESOLVE_NO_MAGICLINKS: 0x02,
  UB_RESOLVE_IN_ROOT: 0x10,
  UB_STATX_MNT_ID: 0x1000,
  UB_STATX_MNT_ID_UNIQUE: 0x4000,
  UB_STATX_ATTR_MOUNT_ROOT: 0x2000,

  UB_NR_clone3: 435,
  UB_CLONE_PIDFD: 0x1000,
  UB_PIDFD_SIGNAL_PROCESS_GROUP: 0x4,
} as const;

/** The eight namespace types, in the order setns would want them listed. */
export const NS_TYPES = ['user', 'mnt', 'pid', 'net', 'uts', 'ipc', 'cgroup', 'time'] as const;
export type NsType = (typeof NS_TYPES)[number];

export const CLONE_FLAG: Record<NsType, number> = {
  user: K.UB_CLONE_NEWUSER,
  mnt: K.UB_CLONE_NEWNS,
  pid: K.UB_CLONE_NEWPID,
  net: K.UB_CLONE_NEWNET,
  uts: K.UB_CLONE_NEWUTS,
  ipc: K.UB_CLONE_NEWIPC,
  cgroup: K.UB_CLONE_NEWCGROUP,
  time: K.UB_CLONE_NEWTIME,
};

/** PIDFD_GET_*_NAMESPACE per type; the `*_for_children` variants are reached by name. */
export const PIDFD_GET_NS = {
  user: K.UB_PIDFD_GET_USER_NAMESPACE,
  mnt: K.UB_PIDFD_GET_MNT_NAMESPACE,
  pid: K.UB_PIDFD_GET_PID_NAMESPACE,
  net: K.UB_PIDFD_GET_NET_NAMESPACE,
  uts: K.UB_PIDFD_GET_UTS_NAMESPACE,
  ipc: K.UB_PIDFD_GET_IPC_NAMESPACE,
  cgroup: K.UB_PIDFD_GET_CGROUP_NAMESPACE,
  time: K.UB_PIDFD_GET_TIME_NAMESPACE,
  pid_for_children: K.UB_PIDFD_GET_PID_FOR_CHILDREN_NAMESPACE,
  time_for_children: K.UB_PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE,
} as const;
export type PidfdNsKind = keyof typeof PIDFD_GET_NS;

export function nsTypeFromCloneFlag(flag: number): NsType | null {
  for (const t of NS_TYPES) if (CLONE_FLAG[t] === flag) return t;
  return null;
}
