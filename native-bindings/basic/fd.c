/* fd.c: see fd.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "basic/fd.h"

void ub_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

int ub_send_fds(int sock, const void *buf, size_t len, const int *fds, int n, int flags)
{
	char control[CMSG_SPACE(UB_FD_MAX * sizeof(int))];
	struct iovec iov = { (void *)buf, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t sent;

	if (n < 0 || n > UB_FD_MAX) {
		errno = EINVAL;
		return -1;
	}
	if (n > 0) {
		struct cmsghdr *cm;

		memset(control, 0, sizeof(control));
		msg.msg_control = control;
		msg.msg_controllen = CMSG_SPACE((size_t)n * sizeof(int));
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, (size_t)n * sizeof(int));
	}
	sent = sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
	if (sent >= 0 && (size_t)sent != len)
		errno = EMSGSIZE;
	return sent >= 0 && (size_t)sent == len ? 0 : -1;
}

ssize_t ub_recv_fds(int sock, void *buf, size_t cap, int *fds, int max, int *nfds, int flags, int *truncated)
{
	char control[CMSG_SPACE(UB_FD_MAX * sizeof(int))];
	struct iovec iov = { buf, cap };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			      .msg_controllen = sizeof(control) };
	ssize_t n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);

	*nfds = 0;
	if (truncated)
		*truncated = n >= 0 && (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC));
	if (n < 0)
		return n;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		int k;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + (size_t)i * sizeof(int), sizeof(int));
			if (*nfds < max)
				fds[(*nfds)++] = fd;
			else
				close(fd);
		}
	}
	return n;
}
