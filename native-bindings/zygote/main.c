/*
 * main.c: upcall-zygote's process and its event loop.  The zygote is the
 * broker's long-lived, single-threaded spawner: it reads requests on stdin and
 * writes events on stdout (frames: a 4-byte big-endian length, then a binary
 * record, or JSON for the exit event: wire.c, native-bindings/README.md), and polls every request's pipes, sockets
 * and pidfds, its templates' control sockets and the proc connector in one
 * poll(2) loop (request.c, template.c, exit-status.c).  See zygote.h for the
 * processes of one request.
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

struct req reqs[UB_ZYGOTE_MAX_INFLIGHT];
size_t reqs_hi, tmpls_hi;
int opt_templates = 1;
long long opt_ttl_ms = 10000, opt_idle_ms = 3000;
int opt_max_templates = MAX_TEMPLATES;
struct ub_buf inbuf;
/* not on the stack, so that scrub_foreign() finds them: what was last read
 * from the broker and from an upcall, the last request sent to a template */
char stdin_tmp[65536], stream_tmp[65536];
size_t outq_off, discard;
int stdin_eof;
pid_t zygote_pid;
int broker_pidfd = -1;

/* ------------------------------------------------------------------------
 * profiling (zygote.h)
 */
#ifdef UB_ZYGOTE_PROFILE
#include <sys/mman.h>
static const char *const prof_names[PF_COUNT] = { "parsed", "forked", "a_start", "a_open", "a_capture", "a_outside",
	"a_enter", "a_fork_b", "b_start", "b_checked", "b_clone", "b_sent", "a_reaped", "z_got_p", "z_go", "z_started", "c_go", "z_c_exit", "z_emit" };
long long (*prof)[PF_COUNT];
int prof_slot;
static FILE *prof_out;
void prof_init(void)
{
	char path[64];

	prof = mmap(NULL, sizeof(*prof) * UB_ZYGOTE_MAX_INFLIGHT, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (prof == MAP_FAILED)
		prof = NULL;
	snprintf(path, sizeof(path), "/tmp/ub-zygote-profile.%d.log", (int)getpid());
	prof_out = fopen(path, "we");
}
void prof_dump(int slot)
{
	int k;

	if (!prof || !prof_out)
		return;
	for (k = 0; k < PF_COUNT; k++)
		fprintf(prof_out, "%s%s=%lld", k ? " " : "", prof_names[k], prof[slot][k] ? (prof[slot][k] - prof[slot][0]) / 1000 : -1);
	fprintf(prof_out, " at_ns=%lld", prof[slot][PF_PARSED]); /* CLOCK_MONOTONIC: the driver's process.hrtime places its own steps */
	fputc('\n', prof_out);
	fflush(prof_out);
	memset(prof[slot], 0, sizeof(prof[slot]));
}
#endif

/* ------------------------------------------------------------------------
 * the broker's side: frames in, events out
 */

static void on_stdin(void)
{
	char *tmp = stdin_tmp;
	ssize_t n = read(0, tmp, sizeof(stdin_tmp));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		stdin_eof = 1;
		return;
	}
	if (ub_buf_append(&inbuf, tmp, (size_t)n) < 0) {
		fputs("upcall-zygote: out of memory reading requests\n", stderr);
		exit(UB_EXIT_SPAWNER);
	}
	for (;;) {
		size_t used = 0, len;

		if (discard) {
			used = discard < inbuf.len ? discard : inbuf.len;
			discard -= used;
		} else if (inbuf.len >= 4) {
			len = ub_frame_len((const unsigned char *)inbuf.p);
			if (len > UB_ZYGOTE_MAX_REQUEST_FRAME) {
				/* skip the body: the length says where the next frame starts */
				emit_error_raw(0, 0, "E_BAD_REQUEST", "E_BAD_REQUEST", "read frame", EMSGSIZE,
					       "request frame larger than 8 MiB");
				discard = len;
				used = 4;
			} else if (inbuf.len >= 4 + len) {
				handle_frame(inbuf.p + 4, len);
				used = 4 + len;
			}
		}
		if (!used)
			break;
		memmove(inbuf.p, inbuf.p + used, inbuf.len - used);
		explicit_bzero(inbuf.p + inbuf.len - used, used); /* the tail's stale copy */
		inbuf.len -= used;
	}
}

static void on_stdout(void)
{
	ssize_t n = write(1, outq.p + outq_off, outq.len - outq_off);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) { /* the broker is gone */
		stdin_eof = 1;
		explicit_bzero(outq.p, outq.len);
		outq.len = outq_off = 0;
		return;
	}
	outq_off += (size_t)n;
	if (outq_off == outq.len) {
		explicit_bzero(outq.p, outq.len);
		outq.len = outq_off = 0;
	}
}

/* The broker closed our stdin: kill what we started (C's process groups, any
 * A still working, the templates), reap our children, and leave.  Nothing
 * else of the containers is touched. */
static void __attribute__((noreturn)) shut_down(void)
{
	long long deadline = ub_now_ms() + SHUTDOWN_WAIT_MS;
	size_t i;

	for (i = 0; i < UB_ZYGOTE_MAX_INFLIGHT; i++)
		if (reqs[i].phase == REQ_STARTING || reqs[i].phase == REQ_RUNNING)
			kill_tree(&reqs[i]);
	for (i = 0; i < TEMPLATE_SLOTS; i++)
		if (tmpls[i].used)
			retire(&tmpls[i], 1);
	while (ub_now_ms() < deadline && waitpid(-1, NULL, WNOHANG) >= 0) {
		struct timespec ts = { 0, 5000000 };
		nanosleep(&ts, NULL);
	}
	exit(0);
}

enum kind { W_SOCK, W_IN, W_OUT, W_ERR, W_CPID, W_APID, W_BPID, W_TCTL, W_TPID, W_CN };

struct watch {
	struct req *r;
	struct tmpl *t;
	enum kind kind;
};

static int build_poll(struct pollfd *pfd, struct watch *w, long long now, int *timeout)
{
	int n = 0;
	size_t i;

#define WATCH(fd_, ev_, r_, t_, k_) do { pfd[n] = (struct pollfd){ (fd_), (ev_), 0 }; w[n] = (struct watch){ (r_), (t_), (k_) }; n++; } while (0)
	*timeout = -1;
	if (!stdin_eof && outq.len < MAX_OUTQ)
		WATCH(0, POLLIN, NULL, NULL, W_SOCK);
	if (outq.len > outq_off)
		WATCH(1, POLLOUT, NULL, NULL, W_IN);
	if (cn_fd >= 0)
		WATCH(cn_fd, POLLIN, NULL, NULL, W_CN);
	for (i = 0; i < reqs_hi; i++) {
		struct req *r = &reqs[i];
		long long due;

		if (r->phase == REQ_FREE)
			continue;
		if (r->apidfd >= 0)
			WATCH(r->apidfd, POLLIN, r, NULL, W_APID);
		if (r->phase == REQ_DONE)
			continue;
		if (r->sock >= 0)
			WATCH(r->sock, POLLIN, r, NULL, W_SOCK);
		if (r->in_fd >= 0 && r->in_off < r->a.input_len)
			WATCH(r->in_fd, POLLOUT, r, NULL, W_IN);
		if (r->out.fd >= 0)
			WATCH(r->out.fd, POLLIN, r, NULL, W_OUT);
		if (r->err.fd >= 0)
			WATCH(r->err.fd, POLLIN, r, NULL, W_ERR);
		if (r->cpidfd >= 0 && !r->c_exited)
			WATCH(r->cpidfd, POLLIN, r, NULL, W_CPID);
		if (r->bpidfd >= 0 && !r->b_exited)
			WATCH(r->bpidfd, POLLIN, r, NULL, W_BPID);
		due = r->timed_out ? r->grace_deadline : r->deadline;
		if (*timeout < 0 || due - now < *timeout)
			*timeout = due > now ? (int)(due - now) : 0;
	}
	for (i = 0; i < tmpls_hi; i++) {
		struct tmpl *t = &tmpls[i];
		long long due;

		if (!t->used)
			continue;
		if (t->pidfd >= 0)
			WATCH(t->pidfd, POLLIN, NULL, t, W_TPID);
		if (t->ctl >= 0)
			WATCH(t->ctl, POLLIN, NULL, t, W_TCTL);
		if (!t->live)
			continue;
		due = t->last_used + opt_idle_ms;
		if (t->created + t->ttl_ms < due)
			due = t->created + t->ttl_ms;
		if (*timeout < 0 || due - now < *timeout)
			*timeout = due > now ? (int)(due - now) : 0;
	}
#undef WATCH
	return n;
}

static void dispatch(const struct pollfd *p, const struct watch *w)
{
	struct req *r = w->r;

	if (!p->revents)
		return;
	if (w->t) {
		if (w->kind == W_TPID)
			forget_template(w->t);
		else if (w->t->ctl >= 0)
			on_template_ctl(w->t);
		return;
	}
	if (w->kind == W_CN) {
		cn_drain();
		return;
	}
	if (!r) {
		if (p->fd == 0)
			on_stdin();
		else
			on_stdout();
		return;
	}
	if (r->phase == REQ_DONE && w->kind != W_APID)
		return;
	switch (w->kind) {
	case W_SOCK: on_sock(r); break;
	case W_IN: on_stdin_pipe(r); break;
	case W_OUT: on_stream(r, &r->out, r->a.output_cap); break;
	case W_ERR: on_stream(r, &r->err, r->a.output_cap); break;
	case W_CPID:
		r->c_exited = 1;
		PROF(r - reqs, PF_Z_C_EXIT);
		read_status(r);
		break;
	case W_BPID:
		r->b_exited = 1;
		on_sock(r); /* B's 'P' is there: C may start */
		break;
	case W_APID: on_a_exit(r); break;
	default: break;
	}
}

static void ensure_std_fds(void)
{
	int fd;

	while ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0 && fd <= 2)
		fcntl(fd, F_SETFD, 0);
	if (fd > 2)
		close(fd);
}

/*
 * A pidfd of the broker, our parent: pidfd_open(getppid()), then getppid()
 * again (a parent that died in between left us to a reaper, and the pidfd
 * might name a process that reused its pid).  pidfd_getfd(2) needs
 * PTRACE_MODE_ATTACH_REALCREDS over the broker: we are its child with its
 * credentials, but Yama's ptrace_scope 3 (or a scope of 1-2 without
 * CAP_SYS_PTRACE) refuses; probed here on a number no process has open
 * (EBADF: allowed, EPERM: refused), so that the broker learns it at once
 * instead of at every spawn.
 */
static int open_broker(void)
{
	pid_t parent = getppid();

	broker_pidfd = (int)syscall(UB_NR_pidfd_open, parent, 0);
	if (broker_pidfd < 0 || getppid() != parent || parent == 1) {
		fprintf(stderr, "upcall-zygote: pidfd_open(parent %d): %s\n", (int)parent,
			broker_pidfd < 0 ? strerror(errno) : "the parent exited");
		return -1;
	}
	if (syscall(UB_NR_pidfd_getfd, broker_pidfd, INT_MAX, 0) >= 0 || errno != EBADF) {
		fprintf(stderr, "upcall-zygote: pidfd_getfd on the broker refused (%s): see /proc/sys/kernel/yama/ptrace_scope\n",
			strerror(errno));
		return -1;
	}
	return 0;
}

static int usage(FILE *to, int status)
{
	fputs("Usage: upcall-zygote [--no-context-cache] [--context-ttl-ms N] [--context-idle-ms N] [--max-contexts N]\n\n"
	      "Serve spawn requests (frames) on stdin, events on stdout.\n"
	      "See native-bindings/README.md.\n", to);
	return status;
}

int main(int argc, char **argv)
{
	static struct pollfd pfd[3 + UB_ZYGOTE_MAX_INFLIGHT * 7 + TEMPLATE_SLOTS * 2];
	static struct watch w[3 + UB_ZYGOTE_MAX_INFLIGHT * 7 + TEMPLATE_SLOTS * 2];
	size_t i;
	int k;

	zargc = argc;
	zargv = argv;
	for (k = 1; k < argc; k++) {
		const char *o = argv[k];
		char *end = NULL;
		long long v = k + 1 < argc ? strtoll(argv[k + 1], &end, 10) : -1;
		int num = end && *end == '\0' && v >= 0;

		if (strcmp(o, "--version") == 0 || strcmp(o, "-V") == 0) {
			printf("upcall-zygote " ZYGOTE_VERSION "\n");
			return 0;
		}
		if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0)
			return usage(stdout, 0);
		if (strcmp(o, "--no-context-cache") == 0) {
			opt_templates = 0;
		} else if (strcmp(o, "--context-ttl-ms") == 0 && num && v <= UB_ZYGOTE_MAX_TIMEOUT_MS) {
			opt_ttl_ms = v, k++;
		} else if (strcmp(o, "--context-idle-ms") == 0 && num && v <= UB_ZYGOTE_MAX_TIMEOUT_MS) {
			opt_idle_ms = v, k++;
		} else if (strcmp(o, "--max-contexts") == 0 && num && v <= MAX_TEMPLATES) {
			opt_max_templates = (int)v, k++;
		} else {
			return usage(stderr, 2);
		}
	}
	if (opt_max_templates == 0 || opt_ttl_ms == 0 || opt_idle_ms == 0)
		opt_templates = 0;
	ensure_std_fds();
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	zygote_pid = getpid();
	if (open_broker() < 0)
		return UB_EXIT_SPAWNER;
	ub_compat_init(); /* probed once here; every A, B and T inherits the answers */
	cn_open();
#ifdef UB_ZYGOTE_PROFILE
	prof_init();
#endif
	nonblock(0);
	nonblock(1);
	for (i = 0; i < UB_ZYGOTE_MAX_INFLIGHT; i++)
		reset_req(&reqs[i]);
	for (i = 0; i < TEMPLATE_SLOTS; i++)
		tmpls[i].pidfd = tmpls[i].ctl = -1;

	for (;;) {
		long long now = ub_now_ms();
		int timeout, n;

		expire_templates(now);
		for (i = 0; i < reqs_hi; i++)
			if (reqs[i].phase != REQ_FREE)
				check_request(&reqs[i], now);
		if (stdin_eof)
			shut_down();
		if (outq.len > outq_off)
			on_stdout(); /* the events just queued, without a poll round first (EAGAIN: poll waits) */
		n = build_poll(pfd, w, now, &timeout);
		k = poll(pfd, (nfds_t)n, timeout);
		if (k < 0 && errno != EINTR) {
			perror("upcall-zygote: poll");
			return UB_EXIT_SPAWNER;
		}
		for (k = 0; k < n; k++)
			dispatch(&pfd[k], &w[k]);
	}
}
