/** Wire types shared by the broker, its clients and the CLI (docs/protocol.md). */

/** `unmounted`: its mount is gone (the registration stays until it is unregistered). */
export type RegistrationState = 'live' | 'init-exited' | 'unmounted';

export interface ContextInfo {
  id: string;
  /** The init's pid in the broker's pid namespace. */
  initPid: number;
  /** Inode numbers of P0 (the context's pid namespace) and U (the mounter's user namespace). */
  pidns: number;
  userns: number;
  initStartTime: number;
}

export interface RegistrationInfo {
  id: string;
  mountpoint: string;
  mountId: number;
  mountIdKind: 'unique' | 'legacy';
  fstype: string | null;
  source: string | null;
  mounter: { pid: number; uid: number; gid: number };
  createdAt: string;
  state: RegistrationState;
  context: ContextInfo;
}

export interface FailureInfo {
  time: string;
  type: string;
  code: string;
  message: string;
  context?: string;
}

/** The `status` op's answer. */
export interface StatusInfo {
  version: string;
  protocol: number;
  pid: number;
  uptimeSeconds: number;
  contexts: { live: number };
  registrations: { total: number; live: number; initExited: number };
  upcalls: Record<string, number>;
  recentFailures: FailureInfo[];
}
