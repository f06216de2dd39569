/*
 * template.c: the context cache.  In the zygote: one struct tmpl per cached
 * init (found, started, retired, expired), and the request forwarded to a
 * live template ('Q' with the request's four fds).  In the template process
 * T (a child of the container's init, inside its pid namespace, with init's
 * context applied): serving those requests by cloning C with CLONE_PARENT,
 * after checking init's context against the captured one.
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
#include <sys/mman.h>
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

struct tmpl tmpls[TEMPLATE_SLOTS];
char qmsg_out[QMSG_MAX];

/* ------------------------------------------------------------------------
 * in the template process T
 */

/*
 * A request forwarded to a template: 'Q', a header, then NUL-terminated
 * strings (argv, envp, cwd), with four fds: stdin, stdout, stderr, socket.
 * wait_go: C waits for the zygote's 'G' (template_c_waits).
 */
struct qhdr {
	uint32_t builtin, argc, envc, has_cwd, path_index, slot, wait_go;
};

/* Whether a template's C waits for the zygote's 'G' before it runs.  It is
 * init's child from its first instant (CLONE_PARENT) and T checked init's
 * context before cloning it, so 'G' only lets the zygote learn C's pid
 * while C is sure to be alive: for its exit status where a reaped child's
 * is lost (before PIDFD_INFO_EXIT, Linux 6.15), and for the pid that lets
 * the broker kill a program the zygote left behind when it died (the
 * "started" event).  A builtin needs neither on a kernel that keeps the
 * status: it is our own code, ends when its stdin does (the zygote's pipe,
 * or the broker's socket), and runs at once. */
int template_c_waits(const struct spawn_args *a)
{
	return a->builtin == BUILTIN_NONE || !kernel_keeps_exit_status;
}

int qmsg_size(const struct spawn_args *a)
{
	size_t n = 1 + sizeof(struct qhdr);
	char **p;

	for (p = a->argv; p && *p; p++)
		n += strlen(*p) + 1;
	for (p = a->envp; p && *p; p++)
		n += strlen(*p) + 1;
	if (a->cwd)
		n += strlen(a->cwd) + 1;
	return n > QMSG_MAX ? -1 : (int)n;
}

static void qmsg_write(const struct spawn_args *a, uint32_t slot, char *out)
{
	struct qhdr h = { (uint32_t)a->builtin, 0, 0, a->cwd != NULL, UINT32_MAX, slot, (uint32_t)template_c_waits(a) };
	char *p = out + 1 + sizeof(h), **q;

	out[0] = 'Q';
	for (q = a->argv; q && *q; q++, h.argc++)
		p = stpcpy(p, *q) + 1;
	for (q = a->envp; q && *q; q++, h.envc++) {
		if (a->path && a->path == *q + 5)
			h.path_index = h.envc;
		p = stpcpy(p, *q) + 1;
	}
	if (a->cwd)
		stpcpy(p, a->cwd);
	memcpy(out + 1, &h, sizeof(h));
}

/* Pointers into msg (which must outlive a); 0 or -1 for a malformed message. */
static int qmsg_read(char *msg, size_t len, struct spawn_args *a, int *wait_go)
{
	struct qhdr h;
	char *p = msg + 1 + sizeof(h), *end = msg + len;
	uint32_t i;

	if (len < 1 + sizeof(h) || msg[0] != 'Q' || msg[len - 1] != '\0')
		return -1;
	memcpy(&h, msg + 1, sizeof(h));
	if (h.argc > UB_ZYGOTE_MAX_ARGS || h.envc > UB_ZYGOTE_MAX_ARGS)
		return -1;
	a->builtin = (int)h.builtin;
	*wait_go = h.wait_go != 0;
#ifdef UB_ZYGOTE_PROFILE
	prof_slot = (int)h.slot;
#endif
	a->argv = calloc(h.argc + 1, sizeof(char *));
	a->envp = calloc(h.envc + 1, sizeof(char *));
	if (!a->argv || !a->envp)
		return -1;
	for (i = 0; i < h.argc + h.envc + (h.has_cwd ? 1 : 0); i++) {
		if (p >= end)
			return -1;
		if (i < h.argc)
			a->argv[i] = p;
		else if (i < h.argc + h.envc)
			a->envp[i - h.argc] = p;
		else
			a->cwd = p;
		p += strlen(p) + 1;
	}
	if (h.path_index < h.envc)
		a->path = a->envp[h.path_index] + 5;
	return 0;
}

int zargc;                   /* main's argv, to rename the template */
char **zargv;

/* In T: one request.  First (check) init's context is compared with the
 * captured one: a change goes to the zygote ('S' and why), which retries
 * the request cold, and T goes having cloned nothing.  Then C is cloned with
 * CLONE_PARENT, so its parent is T's, the container's init, from its first
 * instant; fds are the request's stdin, stdout, stderr and socket (NULL:
 * they already are 0..3, the first request, which B' serves unchecked, as
 * the cold path it is).  C's pidfd goes to the zygote ('P': cloned after a
 * passed check); C then waits for the zygote's 'G' if wait_go
 * (template_c_waits), else runs at once.  0, or -1 when the context
 * changed (T must go). */
static int t_spawn(struct ub_context *ctx, const struct spawn_args *a, const int *fds, int check, int wait_go)
{
	int pidfd = -1, sock = fds ? fds[3] : CHILD_SOCK, i;
	struct clone_args_v0 ca = { .flags = UB_CLONE_PIDFD | CLONE_PARENT, .pidfd = (uint64_t)(uintptr_t)&pidfd };
	struct ub_ctx_error e;
	long c;

	PROF(prof_slot, PF_B_START);
	if (check) {
		char why[200], msg[256];
		int n;

		if (!check_context(ctx, why, sizeof(why))) {
			n = snprintf(msg, sizeof(msg), "S%s", why);
			send(sock, msg, (size_t)n, MSG_NOSIGNAL);
			return -1;
		}
		PROF(prof_slot, PF_B_CHECKED);
	}
	c = syscall(UB_NR_clone3, &ca, sizeof(ca));
	if (c == 0) {
		/* our 0..4 are copies of the control socket: the fds we got are above */
		for (i = 0; fds && i < 4; i++)
			dup2(fds[i], i);
		fcntl(CHILD_SOCK, F_SETFD, FD_CLOEXEC);
		if (a->cwd && enter_request_cwd(a->cwd, &e) < 0)
			child_fail(&e);
		run_c(ctx, a, !check || wait_go);
	}
	if (c < 0) {
		char m[200];
		int err = errno, n = snprintf(m, sizeof(m), "E{\"code\":\"%s\",\"step\":\"clone3 (cached context)\",\"errno\":%d}",
					      ub_ctx_target_exited(ctx->pidfd) ? "E_INIT_EXITED" : "E_FORK", err);

		send(sock, m, (size_t)n, MSG_NOSIGNAL);
		return 0;
	}
	PROF(prof_slot, PF_B_CLONE);
	if (ub_send_fds(sock, "P", 1, &pidfd, 1, 0) < 0)
		syscall(UB_NR_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
	close(pidfd);
	PROF(prof_slot, PF_B_SENT);
	return 0;
}

/* T: serve requests from the control socket until it closes (the zygote
 * retired us, or is gone) or init's context changes.  When init exits, the
 * kernel kills us with the rest of its pid namespace. */
static void __attribute__((noreturn)) template_serve(struct ub_context *ctx)
{
	static char msgbuf[QMSG_MAX + 1];

	for (;;) {
		struct spawn_args a;
		int fds[4], nfds = 0, i, stale = 0, truncated, wait_go = 1;
		ssize_t n = ub_recv_fds(TMPL_CTL, msgbuf, sizeof(msgbuf), fds, 4, &nfds, 0, &truncated);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0);
		memset(&a, 0, sizeof(a));
		if (nfds == 4 && !truncated && qmsg_read(msgbuf, (size_t)n, &a, &wait_go) == 0)
			stale = t_spawn(ctx, &a, fds, 1, wait_go) < 0;
		free(a.argv);
		free(a.envp);
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		if (stale)
			_exit(0); /* the zygote retries that request cold and forgets us */
	}
}

/* In T, before serving: the zygote's memory that T never uses again (its
 * requests, templates and I/O buffers, zeroed by scrub_foreign; the dead
 * stack that scrub_stack wrote) is given back.  Every clone of C copies the
 * page table entries of what T has touched, every write after it copies a
 * page, and C's exit unmaps them all: the fewer, the faster each spawn. */
static void __attribute__((noinline)) shed_memory(void)
{
	struct { void *p; size_t n; } dead[] = {
		{ reqs, sizeof(reqs) }, { tmpls, sizeof(tmpls) }, { stdin_tmp, sizeof(stdin_tmp) },
		{ stream_tmp, sizeof(stream_tmp) }, { qmsg_out, sizeof(qmsg_out) },
	};
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), sp = (uintptr_t)__builtin_frame_address(0), lo, hi;
	size_t i;

	for (i = 0; i < sizeof(dead) / sizeof(dead[0]); i++) {
		lo = ((uintptr_t)dead[i].p + page - 1) & ~(page - 1);
		hi = ((uintptr_t)dead[i].p + dead[i].n) & ~(page - 1);
		if (hi > lo)
			madvise((void *)lo, hi - lo, MADV_DONTNEED);
	}
	/* below our frame, past what a check needs: dead (an error, ENOMEM, for
	 * what is not mapped below the stack: nothing to give back there) */
	hi = (sp - (64u << 10)) & ~(page - 1);
	lo = hi - (512u << 10);
	madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* B' (template path): inside the pid namespace; forks T and exits, so that
 * T is re-parented to the container's init.  T waits for that, serves the
 * first request, checks that the context is cacheable (the cgroups it is in,
 * seen from inside, are init's; check_context passes), then tells the zygote
 * ('T', the fields, its pidfd) and serves the rest. */
void __attribute__((noreturn)) run_template(struct ub_context *ctx, const struct spawn_args *a, const char *fields)
{
	char why[200], msg[MSG_MAX];
	int i, n, self;
	pid_t t = fork();

	if (t < 0)
		child_fail_errno(ub_ctx_target_exited(ctx->pidfd) ? "E_INIT_EXITED" : "E_FORK", "fork (template)", errno);
	if (t > 0)
		_exit(0); /* B' */
	in_template = 1;
	/* T: wait until B' is gone and init is our parent (then CLONE_PARENT makes init's children) */
	for (i = 0; getppid() != 1; i++) {
		int pfd = (int)syscall(UB_NR_pidfd_open, getppid(), 0);
		struct pollfd p = { pfd, POLLIN, 0 };

		if (i == 100)
			child_fail_errno("E_FORK", "template: not re-parented to init", ETIMEDOUT);
		if (pfd >= 0) {
			poll(&p, 1, 10);
			close(pfd);
		}
	}
	if (t_spawn(ctx, a, NULL, 0, 1) < 0)
		_exit(0);
	for (i = 0; i < 4; i++)
		dup2(TMPL_CTL, i); /* let go of the first request's pipes and socket */
	prctl(PR_SET_NAME, "upcall-context", 0, 0, 0);
	if (zargc > 0) { /* /proc/<T>/cmdline, seen from inside: no host path */
		char *end = zargv[zargc - 1] + strlen(zargv[zargc - 1]);
		memset(zargv[0], 0, (size_t)(end - zargv[0]));
		snprintf(zargv[0], (size_t)(end - zargv[0]) + 1, "upcall-context");
	}
	if (ub_read_small_at(hostproc, "self/cgroup", snap.cgroup, sizeof(snap.cgroup)) < 0 || !check_context(ctx, why, sizeof(why)))
		_exit(0); /* not cacheable: the zygote sees EOF and forgets us */
	close(hostproc);
	hostproc = -1;
	self = (int)syscall(UB_NR_pidfd_open, getpid(), 0);
	n = snprintf(msg, sizeof(msg), "T%s", fields);
	if (self < 0 || n >= (int)sizeof(msg))
		_exit(0);
	if (ub_send_fds(TMPL_CTL, msg, (size_t)n, &self, 1, 0) < 0)
		_exit(0);
	close(self);
	shed_memory();
	template_serve(ctx);
}

/* ------------------------------------------------------------------------
 * templates (the context cache), in the zygote
 */

void own_rlimits(struct rlimit *rl)
{
	int r;

	for (r = 0; r < RLIM_NLIMITS; r++)
		getrlimit(r, &rl[r]);
}

/* Stop giving it requests; it exits once it has read the ones it has (EOF). */
void retire(struct tmpl *t, int kill_it)
{
	t->live = 0;
	ub_close_fd(&t->ctl);
	if (kill_it && t->pidfd >= 0)
		syscall(UB_NR_pidfd_send_signal, t->pidfd, SIGKILL, NULL, 0);
	if (t->pidfd < 0)
		forget_template(t); /* never got ready: nothing to watch */
}

/* T has exited (or never got ready): forget it.  T is the container init's
 * child, not ours: nothing to reap here. */
void forget_template(struct tmpl *t)
{
	size_t i;

	for (i = 0; i < reqs_hi; i++)
		if (reqs[i].phase != REQ_FREE && reqs[i].tmpl == t) {
			if (!reqs[i].fields && t->fields)
				reqs[i].fields = strdup(t->fields);
			reqs[i].tmpl = NULL;
		}
	ub_close_fd(&t->pidfd);
	ub_close_fd(&t->ctl);
	ub_free_zeroed(t->fields);
	memset(t, 0, sizeof(*t));
	t->pidfd = t->ctl = -1;
}

/* A live template for this request's init that is still young enough, and
 * whose base (our rlimits) has not moved. */
struct tmpl *find_template(const struct spawn_args *a, long long now)
{
	size_t i;

	for (i = 0; i < tmpls_hi; i++) {
		struct tmpl *t = &tmpls[i];
		struct rlimit ours[RLIM_NLIMITS];

		if (!t->live || t->init_pid != a->target.pid || t->start_time != a->target.start_time ||
		    t->pidns_ino != a->target.pidns_ino || t->host != a->target.host)
			continue;
		own_rlimits(ours);
		if (now - t->created > t->ttl_ms || memcmp(ours, t->rlim, sizeof(ours)) != 0) {
			retire(t, 0);
			continue;
		}
		return t;
	}
	return NULL;
}

int pending_template(const struct spawn_args *a)
{
	size_t i;

	for (i = 0; i < tmpls_hi; i++)
		if (tmpls[i].live && !tmpls[i].fields && tmpls[i].init_pid == a->target.pid &&
		    tmpls[i].start_time == a->target.start_time && tmpls[i].pidns_ino == a->target.pidns_ino)
			return 1;
	return 0;
}

/* 0..max, spread: templates made together (a hundred containers' first
 * upcalls, a restart) are not all retired and captured again together, a
 * storm of captures that stalls every other upcall; only ever shortening
 * the TTL, it keeps its bound on how long a context goes unrecaptured. */
static long long jitter(long long max)
{
	static unsigned long long x;

	if (!x)
		x = (unsigned long long)ub_now_ns() | 1;
	x ^= x << 13; /* xorshift64 */
	x ^= x >> 7;
	x ^= x << 17;
	return max > 0 ? (long long)(x % (unsigned long long)(max + 1)) : 0;
}

/* A slot for a new template: a free one, after retiring the least recently
 * used live one when --max-contexts are live. */
struct tmpl *new_template(long long now)
{
	struct tmpl *lru = NULL, *free_slot_ = NULL;
	size_t i;
	int live = 0;

	for (i = 0; i < TEMPLATE_SLOTS; i++) {
		struct tmpl *t = &tmpls[i];

		if (!t->used) {
			if (!free_slot_)
				free_slot_ = t;
			continue;
		}
		if (!t->live)
			continue;
		live++;
		if (!lru || t->last_used < lru->last_used)
			lru = t;
	}
	if (live >= opt_max_templates && lru)
		retire(lru, 0);
	if (!free_slot_)
		return NULL;
	if ((size_t)(free_slot_ - tmpls) >= tmpls_hi)
		tmpls_hi = (size_t)(free_slot_ - tmpls) + 1;
	memset(free_slot_, 0, sizeof(*free_slot_));
	free_slot_->pidfd = free_slot_->ctl = -1;
	free_slot_->created = free_slot_->last_used = now;
	free_slot_->ttl_ms = opt_ttl_ms - jitter(opt_ttl_ms / 4);
	return free_slot_;
}

/* 'T' + fields, with T's pidfd: ready.  EOF: it gave up (not cacheable). */
void on_template_ctl(struct tmpl *t)
{
	char data[MSG_MAX];
	int fd = -1, nfds;
	ssize_t n = ub_recv_fds(t->ctl, data, sizeof(data) - 1, &fd, 1, &nfds, MSG_DONTWAIT, NULL);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (nfds == 0)
		fd = -1;
	if (n > 1 && data[0] == 'T' && fd >= 0 && t->pidfd < 0 && !t->fields && ub_json_validate(data + 1, (size_t)n - 1) == 0) {
		t->fields = strndup(data + 1, (size_t)n - 1);
		t->pidfd = fd;
		return;
	}
	if (fd >= 0)
		close(fd);
	retire(t, n > 0);
}

/* Hand the request to a template: the args and the child ends of its fds. */
int send_to_template(struct tmpl *t, struct req *r, const int fds[4])
{
	char *msgbuf = qmsg_out;
	int size = qmsg_size(&r->a);

	if (size < 0 || t->ctl < 0)
		return -1;
	qmsg_write(&r->a, (uint32_t)(r - reqs), msgbuf);
	if (ub_send_fds(t->ctl, msgbuf, (size_t)size, fds, 4, MSG_DONTWAIT) < 0) {
		int e = errno;

		explicit_bzero(msgbuf, (size_t)size);
		if (e != EAGAIN)
			retire(t, 1);
		return -1;
	}
	explicit_bzero(msgbuf, (size_t)size);
	return 0;
}

void expire_templates(long long now)
{
	size_t i;

	for (i = 0; i < tmpls_hi; i++) {
		struct tmpl *t = &tmpls[i];

		if (t->live && (now - t->last_used >= opt_idle_ms || now - t->created >= t->ttl_ms))
			retire(t, 0);
	}
}
