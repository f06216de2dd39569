/*
 * exit-status.c: C's exit status.  C is init's child, not ours: PIDFD_INFO_EXIT
 * (Linux 6.15) gives it once init has reaped C; before that, field 52 of
 * /proc/<pid>/stat while C is a zombie, or the proc connector's exit event.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/keyctl.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "basic/base64.h"
#include "basic/buf.h"
#include "basic/fd.h"
#include "basic/file.h"
#include "basic/frame.h"
#include "basic/proc.h"
#include "basic/time.h"
#include "context/context.h"
#include "netrelay.h"
#include "ub-client.h"
#include "ub-kernel.h"
#include "ub-wire.h"
#include "zygote/zygote.h"

/* ------------------------------------------------------------------------
 * exit statuses before Linux 6.15: the proc connector
 *
 * Without PIDFD_INFO_EXIT a non-parent learns C's status only while C is a
 * zombie, and most inits reap at once.  The proc connector (cn_proc,
 * CONFIG_PROC_EVENTS; listening needs CAP_NET_ADMIN in the initial user and
 * pid namespaces) sends every task's exit with its wait() status, from
 * do_exit() right after exit_notify() (which wakes the pidfd): when C's
 * pidfd polls readable its event is queued here or about to be, so a missing
 * one is waited for, briefly (CN_WAIT_MS).  An event is taken for C only if it is newer than the
 * moment we learned C's pid: C was alive then and holds the pid until reaped.
 * An overflowing socket (ENOBUFS on a busy host) loses events: then field 52.
 */

int cn_fd = -1;
int kernel_keeps_exit_status;
#define CN_WAIT_MS 50 /* the exiting task sends it a few instructions after the wake-up; the loop waits meanwhile */

/* PIDFD_INFO_EXIT works here: a child of ours, reaped, still has a status
 * (1); it does not (0); cannot tell (-1). */
static int kernel_has_exit_info(void)
{
	struct pidfd_info_v0 info = { .mask = UB_PIDFD_INFO_EXIT };
	pid_t pid;
	int pidfd, ok;

	if (!ub_compat_has(UB_COMPAT_PIDFD_INFO))
		return 0;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0)
		_exit(0);
	pidfd = (int)syscall(UB_NR_pidfd_open, pid, 0);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (pidfd < 0)
		return -1;
	ok = ioctl(pidfd, UB_PIDFD_GET_INFO, &info) == 0 && (info.mask & UB_PIDFD_INFO_EXIT);
	close(pidfd);
	return ok;
}

void cn_open(void)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC };
	struct {
		struct nlmsghdr nl;
		struct cn_msg cn;
		uint32_t op;
	} __attribute__((packed)) msg;
	int fd, size = 8 << 20, has = kernel_has_exit_info();

	kernel_keeps_exit_status = has == 1;
	if (has != 0)
		return; /* not needed; or cannot tell: no listener */
	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_CONNECTOR);
	if (fd < 0)
		return;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	memset(&msg, 0, sizeof(msg));
	msg.nl.nlmsg_len = sizeof(msg);
	msg.nl.nlmsg_type = NLMSG_DONE;
	msg.cn.id.idx = CN_IDX_PROC;
	msg.cn.id.val = CN_VAL_PROC;
	msg.cn.len = sizeof(msg.op);
	msg.op = PROC_CN_MCAST_LISTEN;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || send(fd, &msg, sizeof(msg), 0) != (ssize_t)sizeof(msg)) {
		close(fd);
		return;
	}
	cn_fd = fd;
}

static void cn_record(pid_t pid, uint32_t status, long long ts)
{
	size_t i;

	for (i = 0; i < reqs_hi; i++) {
		struct req *r = &reqs[i];

		if ((r->phase == REQ_STARTING || r->phase == REQ_RUNNING) && !r->have_status && r->cpid == pid && r->cpid_at_ns && ts > r->cpid_at_ns) {
			r->status = (int)status;
			r->have_status = 1;
		}
	}
}

void cn_drain(void)
{
	char buf[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
	ssize_t n;

	while (cn_fd >= 0 && ((n = recv(cn_fd, buf, sizeof(buf), 0)) > 0 || (n < 0 && errno == ENOBUFS))) {
		const struct nlmsghdr *h;
		int len = (int)n;

		if (n < 0)
			continue; /* overflowed: some events are lost */
		for (h = (const struct nlmsghdr *)buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
			const struct cn_msg *cn = NLMSG_DATA(h);
			const struct proc_event *ev = (const struct proc_event *)cn->data;

			if (cn->id.idx != CN_IDX_PROC || cn->len < sizeof(*ev) || ev->what != PROC_EVENT_EXIT)
				continue;
			/* the thread group leader's exit carries the process's status */
			if (ev->event_data.exit.process_pid == ev->event_data.exit.process_tgid)
				cn_record(ev->event_data.exit.process_pid, ev->event_data.exit.exit_code, (long long)ev->timestamp_ns);
		}
	}
}

/* C's exit status once init has reaped it: PIDFD_INFO_EXIT (Linux 6.15). */
static int reaped_status(int pidfd, int *status)
{
	struct pidfd_info_v0 info = { .mask = UB_PIDFD_INFO_EXIT };

	if (!ub_compat_has(UB_COMPAT_PIDFD_INFO) || ioctl(pidfd, UB_PIDFD_GET_INFO, &info) < 0 ||
	    !(info.mask & UB_PIDFD_INFO_EXIT))
		return 0;
	*status = info.exit_code;
	return 1;
}

/* The exit status of C once its pidfd polled readable.  Before 6.15 a status
 * is known only while C is a zombie: once init reaps it, it is lost (code
 * null; doctor reports PIDFD_GET_INFO degraded). */
void read_status(struct req *r)
{
	int tries;

	cn_drain(); /* C's exit event, if a listener is open, is queued by now */
	for (tries = 0; tries < 3 && !r->have_status; tries++) {
		char path[64], stat[4096];
		unsigned long long code;

		if (reaped_status(r->cpidfd, &r->status)) {
			r->have_status = 1; /* reaped by init */
			return;
		}
		/* A zombie (init has not reaped it): its pid cannot be reused, so
		 * /proc/<pid>/stat is C's; field 52 is the exit code in wait() form.
		 * Asking the pidfd again afterwards proves it was still unreaped. */
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)r->cpid);
		/* still unreaped (its pidfd still names a pid): the file was C's */
		if (ub_read_small_at(AT_FDCWD, path, stat, sizeof(stat)) == 0 &&
		    ub_proc_stat_field(stat, strlen(stat), UB_STAT_EXIT_CODE, &code) == 0 && ub_pidfd_pid(r->cpidfd) > 0) {
			r->status = (int)code;
			r->have_status = 1;
			return;
		}
	}
	/* reaped at once: its exit event follows the pidfd's wake-up */
	for (tries = 0; cn_fd >= 0 && !r->have_status && tries < CN_WAIT_MS / 5; tries++) {
		struct pollfd p = { cn_fd, POLLIN, 0 };

		if (poll(&p, 1, 5) > 0)
			cn_drain();
	}
}
