export { K, NS_TYPES, CLONE_FLAG, type NsType, type PidfdNsKind } from './kernel-constants.js';
export { Libc, loadLibc } from './libc.js';
export { OwnedFd } from './owned-fd.js';
export { NamespaceFd, sameNs, type NsIdentity } from './namespace-fd.js';
export { Pidfd, pollExited, type PidfdInfo } from './pidfd.js';
export { peerCred, peerPidfd, socketFd, type PeerCred } from './peer.js';
export { resolveMountOf, type ResolvedMount } from './mount-resolver.js';
export { startTimeOf, hasSysAdmin, rootUidOf } from './proc-info.js';
