/*
 * fd.h: passing file descriptors over unix sockets (SCM_RIGHTS), one message
 * at a time.
 */
#ifndef UB_FD_H
#define UB_FD_H

#include <stddef.h>
#include <sys/types.h>

/* The most fds one message carries. */
#define UB_FD_MAX 4

/* Close *fd if open; set it to -1. */
void ub_close_fd(int *fd);

/* One message [buf, buf+len) with fds[0..n) (n <= UB_FD_MAX; 0: none);
 * flags for sendmsg (MSG_NOSIGNAL is always added).  0 once all of it is
 * sent, else -1 (errno; EMSGSIZE for a short send). */
int ub_send_fds(int sock, const void *buf, size_t len, const int *fds, int n, int flags);

/* One message into buf (cap bytes), its fds (O_CLOEXEC) into fds[0..max);
 * any beyond max are closed.  *nfds gets their count, *truncated (may be
 * NULL) whether the data or the fds were cut.  recvmsg's result. */
ssize_t ub_recv_fds(int sock, void *buf, size_t cap, int *fds, int max, int *nfds, int flags, int *truncated);

#endif /* UB_FD_H */
