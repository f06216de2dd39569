/*
 * children.c: the processes of one request (A outside, B inside, C the
 * upcall: see zygote.h), the context cache's check glue (the snapshot A takes,
 * context/check.c does the comparing), and the process tree of a request that
 * is killed (C, its process group and descendants that left it).
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
 * the child processes A, B, C
 */

static void child_report(const struct ub_ctx_error *e)
{
	char msg[1024], step[600];
	int n;

	ub_json_escape(step, 0, sizeof(step), e->step);
	n = snprintf(msg, sizeof(msg), "E{\"code\":\"%s\",\"step\":\"%s\",\"errno\":%d}", e->code, step, e->err);
	send(CHILD_SOCK, msg, (size_t)n, MSG_NOSIGNAL);
}

void __attribute__((noreturn)) child_fail(const struct ub_ctx_error *e)
{
	child_report(e);
	_exit(UB_EXIT_SPAWNER);
}

void __attribute__((noreturn)) child_fail_errno(const char *code, const char *step, int err)
{
	struct ub_ctx_error e = { .code = code, .err = err };

	snprintf(e.step, sizeof(e.step), "%s", step);
	child_fail(&e);
}

/* Set once default_signals() has run in this process (A, first thing):
 * whatever A forks (B, B', T) never installs a handler or blocks a signal,
 * so their C needs no second round of ~64 sigaction calls. */
static int signals_default;

static void default_signals(void)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t none;
	int sig;

	for (sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL); /* EINVAL for SIGKILL/SIGSTOP/libc-internal: fine */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signals_default = 1;
}

/* builtin "echo-context": what this process is, seen from inside. */
static int builtin_echo_context(void)
{
	static const char *const ns[] = { "user", "mnt", "pid", "net", "uts", "ipc", "cgroup", "time" };
	uid_t ru, eu, su;
	gid_t rg, eg, sg, groups[64];
	char cwd[PATH_MAX], path[64];
	size_t i;
	int n;

	getresuid(&ru, &eu, &su);
	getresgid(&rg, &eg, &sg);
	dprintf(1, "uid %u %u %u %u\n", ru, eu, su, (unsigned)setfsuid(-1));
	dprintf(1, "gid %u %u %u %u\n", rg, eg, sg, (unsigned)setfsgid(-1));
	n = getgroups(64, groups);
	dprintf(1, "groups");
	for (i = 0; n > 0 && i < (size_t)n; i++)
		dprintf(1, " %u", groups[i]);
	dprintf(1, "\n");
	for (i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		struct stat st;

		snprintf(path, sizeof(path), "/proc/self/ns/%s", ns[i]);
		if (stat(path, &st) == 0)
			dprintf(1, "ns %s %s:[%llu]\n", ns[i], ns[i], (unsigned long long)st.st_ino);
		else
			dprintf(1, "ns %s error %d\n", ns[i], errno);
	}
	dprintf(1, "cwd %s\n", getcwd(cwd, sizeof(cwd)) ? cwd : "?");
	dprintf(1, "pid %d ppid %d\n", (int)getpid(), (int)getppid());
	dprintf(1, "dumpable %d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
	dprintf(1, "no_new_privs %d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
	dprintf(1, "session_keyring %ld\n", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
	return 0;
}

void __attribute__((noreturn)) run_c(struct ub_context *ctx, const struct spawn_args *a, int wait_go)
{
	struct ub_ctx_error e;
	char go;
	int i;

	/* 0, 1, 2 and the socket only: init's pidfd, /proc fds... go */
	syscall(UB_NR_close_range, CHILD_SOCK + 1, ~0U, 0);
	ctx->pidfd = ctx->procfd = ctx->rootfd = ctx->lsm_fd = -1;
	for (i = 0; i < UB_WATCH_COUNT; i++)
		ctx->watch_fd[i] = -1;
	if (!signals_default)
		default_signals();
	if (setsid() < 0)
		child_fail_errno("E_FORK", "setsid", errno);
	if (ub_ctx_prepare_final(ctx, &e) < 0)
		child_fail(&e);
	/* wait until the zygote knows our pid and B is gone: then init is our
	 * parent (a template's builtin, on a kernel that keeps its exit status,
	 * need not: template_c_waits) */
	if (wait_go && (recv(CHILD_SOCK, &go, 1, 0) != 1 || go != 'G'))
		_exit(UB_EXIT_SPAWNER);
	PROF(prof_slot, PF_C_GO);
	if (ub_ctx_seal(ctx, &e) < 0)
		child_fail(&e);
	if (a->builtin == BUILTIN_NETRELAY) {
		close(CHILD_SOCK);
		_exit(netrelay_serve(0, 1) == 0 ? 0 : 1);
	}
	if (a->builtin) {
		close(CHILD_SOCK);
		_exit(builtin_echo_context());
	}
	ub_ctx_exec(a->argv, a->envp, a->path, &e);
	child_report(&e);
	_exit(e.err == ENOENT ? UB_EXIT_NOT_FOUND : UB_EXIT_CANNOT_EXEC);
}

/* The request's cwd, entered by B with init's credentials (as a child of init
 * would chdir), and checked: getcwd must say where we are, inside our root. */
int enter_request_cwd(const char *cwd, struct ub_ctx_error *e)
{
	char got[PATH_MAX], want[PATH_MAX];

	e->code = "E_CHDIR";
	if (chdir(cwd) < 0) {
		e->err = errno;
		snprintf(e->step, sizeof(e->step), "chdir(%.150s)", cwd);
		return -1;
	}
	errno = 0;
	if (!getcwd(got, sizeof(got)) || got[0] != '/') { /* glibc: ENOENT outside our root */
		e->err = errno ? errno : ENOENT;
		snprintf(e->step, sizeof(e->step), "getcwd after chdir(%.150s)", cwd);
		return -1;
	}
	if (!realpath(cwd, want) || strcmp(got, want) != 0) {
		e->err = EXDEV;
		snprintf(e->step, sizeof(e->step), "cwd is %.90s, expected %.90s", got, cwd);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * the context cache: what a template checks before each use (context.h,
 * ub_ctx_snapshot_read and ub_ctx_check)
 */
struct ub_ctx_snapshot snap; /* in A and its template: taken once */
int hostproc = -1;           /* A's host /proc: T reads its own cgroups by self/ */

/* In T: the target is pid 1 of T's own pid namespace (B checked it before
 * forking T), for as long as it lives. */
int in_template;

/* init's pid as the caller's pid namespace numbers it (B is inside: 1).
 * Before 6.13 it comes from the host /proc that A opened (hostproc): B is
 * chrooted into the container by then; T has closed that fd, and knows. */
static pid_t target_vpid(int pidfd)
{
	if (in_template && !ub_compat_has(UB_COMPAT_PIDFD_INFO)) {
		if (ub_ctx_target_exited(pidfd)) {
			errno = ESRCH;
			return -1;
		}
		return 1;
	}
	return ub_pidfd_vpid(hostproc > 0 ? hostproc : -1, pidfd);
}

int check_context(struct ub_context *c, char *why, size_t cap)
{
	return ub_ctx_check(c, target_vpid(c->pidfd), &snap, why, cap);
}

/* ------------------------------------------------------------------------
 * B, and A that forks it
 */

/* B (cold path): inside the pid namespace.  Enters the request's cwd, clones
 * C and hands the zygote C's pidfd and its own: C is init's child once B is
 * gone (B exits inside the pid namespace, so the kernel re-parents C to its
 * init), and the zygote watches B's pidfd for that. */
static void __attribute__((noreturn)) run_b(struct ub_context *ctx, const struct spawn_args *a)
{
	int pidfd = -1, fds[2];
	struct clone_args_v0 ca = { .flags = UB_CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&pidfd, .exit_signal = SIGCHLD };
	struct ub_ctx_error e;
	long c;

	PROF(prof_slot, PF_B_START);
	if (a->cwd && enter_request_cwd(a->cwd, &e) < 0)
		child_fail(&e);
	c = syscall(UB_NR_clone3, &ca, sizeof(ca));
	if (c < 0) /* a pid namespace whose init died refuses new pids (ENOMEM) */
		child_fail_errno(ub_ctx_target_exited(ctx->pidfd) ? "E_INIT_EXITED" : "E_FORK", "clone3", errno);
	if (c == 0)
		run_c(ctx, a, 1);
	PROF(prof_slot, PF_B_CLONE);
	fds[0] = pidfd;
	fds[1] = (int)syscall(UB_NR_pidfd_open, getpid(), 0);
	if (fds[1] < 0 || ub_send_fds(CHILD_SOCK, "P", 1, fds, 2, 0) < 0) {
		syscall(UB_NR_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
		child_fail_errno("E_FORK", "send pidfds", errno);
	}
	PROF(prof_slot, PF_B_SENT);
	_exit(0);
}

/* Dead frames below ours: what earlier, deeper calls left on the stack. */
static void __attribute__((noinline)) scrub_stack(void)
{
	char pad[256 << 10];

	explicit_bzero(pad, sizeof(pad));
	__asm__ volatile("" : : "r"(pad) : "memory");
}

/* In A, first thing after the fork: all the zygote held that is not this
 * request's -- other requests (argv, env, cwd, stdin, output, fields), frames
 * read and events not yet written, the templates' fields, the I/O buffers,
 * dead stack -- is zeroed (and freed).  A, its template and everything they
 * fork (B, C: an upcall, a builtin that runs inside) keep only this request. */
void scrub_foreign(const struct spawn_args *own)
{
	size_t i;

	for (i = 0; i < UB_ZYGOTE_MAX_INFLIGHT; i++) {
		struct req *r = &reqs[i];

		if (&r->a == own)
			continue;
		if (r->phase != REQ_FREE) {
			free_args(&r->a);
			ub_buf_free(&r->out.data);
			ub_buf_free(&r->err.data);
			ub_free_zeroed(r->fields);
			ub_free_zeroed(r->error);
		}
		explicit_bzero(r, sizeof(*r));
	}
	for (i = 0; i < TEMPLATE_SLOTS; i++) {
		ub_free_zeroed(tmpls[i].fields);
		explicit_bzero(&tmpls[i], sizeof(tmpls[i]));
	}
	ub_buf_free(&inbuf);
	ub_buf_free(&outq);
	explicit_bzero(stdin_tmp, sizeof(stdin_tmp));
	explicit_bzero(stream_tmp, sizeof(stream_tmp));
	explicit_bzero(qmsg_out, sizeof(qmsg_out));
	scrub_stack();
}

/* A: outside.  Opens and captures the context, applies it, enters, reports the
 * fields ('R'), then forks B for this request (cold), or B' for a template
 * (ctl >= 0) that serves this request and later ones of the same init. */
void __attribute__((noreturn)) run_a(const struct spawn_args *a, int in, int out, int err, int sock, int ctl)
{
	struct ub_context ctx;
	struct ub_ctx_error e;
	struct ub_ctx_target target = a->target;
	char msg[MSG_MAX];
	const char *what;
	pid_t b;
	int st, n, tmpl = ctl >= 0;

	/* init's pidfd goes to A_INIT_PIDFD, above the fds dup2'd below first
	 * (F_DUPFD picks a free number, so no other fd of ours is overwritten) */
	target.pidfd = fcntl(a->target.pidfd, F_DUPFD_CLOEXEC, A_INIT_PIDFD + 1);
	if (target.pidfd < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 || dup2(sock, CHILD_SOCK) < 0 ||
	    (tmpl && dup2(ctl, TMPL_CTL) < 0) || dup3(target.pidfd, A_INIT_PIDFD, O_CLOEXEC) < 0)
		_exit(UB_EXIT_SPAWNER);
	target.pidfd = A_INIT_PIDFD;
	target.start_time = 0; /* the pidfd is init: no second identification by number */
	/* nothing of the zygote: other requests' pipes and init pidfds, its own stdin/stdout */
	syscall(UB_NR_close_range, A_INIT_PIDFD + 1, ~0U, 0);
	if (!tmpl)
		close(TMPL_CTL); /* not ours (any other number below A_INIT_PIDFD is dup2'd above) */
	fcntl(CHILD_SOCK, F_SETFD, FD_CLOEXEC);
	if (tmpl)
		fcntl(TMPL_CTL, F_SETFD, FD_CLOEXEC);
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() != zygote_pid)
		_exit(UB_EXIT_SPAWNER);
	default_signals();
	scrub_foreign(a);

	PROF(prof_slot, PF_A_START);
	ub_ctx_init(&ctx);
	if (ub_ctx_open(&ctx, &target, &e) < 0)
		child_fail(&e);
	PROF(prof_slot, PF_A_OPEN);
	/* before the capture: any later change shows as a difference */
	if (tmpl && ctx.host)
		tmpl = 0; /* no template for host requests: it would live in the host's pid namespace */
	if (tmpl) {
		memset(&snap, 0, sizeof(snap));
		hostproc = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (hostproc < 0 || ub_ctx_snapshot_read(&ctx, target_vpid(ctx.pidfd), &snap, &what) < 0)
			tmpl = 0; /* serve this request, cache nothing */
	}
	if (!tmpl && ctl >= 0)
		close(TMPL_CTL); /* the zygote sees EOF at once */
	if (ub_ctx_capture(&ctx, &e) < 0)
		child_fail(&e);
	PROF(prof_slot, PF_A_CAPTURE);
	if (ub_ctx_apply_outside(&ctx, &e) < 0)
		child_fail(&e);
	PROF(prof_slot, PF_A_OUTSIDE);
	/* init's own cwd: a request's cwd is entered by whoever forks C */
	if (ub_ctx_enter(&ctx, NULL, &e) < 0)
		child_fail(&e);
	PROF(prof_slot, PF_A_ENTER);
	msg[0] = 'R';
	ub_ctx_fields_json(&ctx, msg + 1, sizeof(msg) - 1);
	n = (int)strlen(msg);
	if (send(CHILD_SOCK, msg, (size_t)n, MSG_NOSIGNAL) != n)
		_exit(UB_EXIT_SPAWNER);

	/* setns(CLONE_NEWPID) applies to children only: B is inside */
	b = fork();
	if (b < 0)
		child_fail_errno(ub_ctx_target_exited(ctx.pidfd) ? "E_INIT_EXITED" : "E_FORK", "fork", errno);
	if (b == 0) {
		/* a template needs the target to be its pid namespace's init (P0's init is):
		 * T waits to be re-parented to pid 1 */
		if (tmpl && target_vpid(ctx.pidfd) == 1)
			run_template(&ctx, a, msg + 1);
		if (tmpl)
			close(TMPL_CTL); /* not one: the zygote sees EOF and forgets it */
		run_b(&ctx, a);
	}
	PROF(prof_slot, PF_A_FORK_B);
	while (waitpid(b, &st, 0) < 0 && errno == EINTR)
		;
	_exit(0);
}

/* ------------------------------------------------------------------------
 * the process tree of a request that is killed
 */

/*
 * A descendant that called setsid(2) has left the process group C leads, so
 * the group kill misses it. While it is still in C's tree, /proc's children
 * lists (every thread's) find it. They are pinned by pidfd first and signalled
 * after C and its group, so C dies of our SIGKILL (not of its children's exit).
 * A number read from a list is pinned only if, after the pidfd_open, its
 * parent is still the process that list belongs to (ub_pidfd_open_child: the
 * parent's pidfd, C's or a pinned one, alive after the child's ppid was read),
 * so a pid reused between the read and the open is never hit. A descendant
 * whose parent already exited was re-parented to the container's init and is
 * out of reach (the limit docs/security.md states).
 */
#define MAX_PINNED 256

static void pin_descendants(pid_t pid, int pidfd, int depth, int *pinned, size_t *n)
{
	char path[64];
	if (depth > 64)
		return;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *tasks = opendir(path);
	if (!tasks)
		return;
	struct dirent *t;
	while ((t = readdir(tasks)) != NULL && *n < MAX_PINNED) {
		if (t->d_name[0] < '0' || t->d_name[0] > '9')
			continue;
		char cpath[320], buf[4096];
		snprintf(cpath, sizeof(cpath), "/proc/%d/task/%s/children", (int)pid, t->d_name);
		int fd = open(cpath, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		char *save = NULL;
		for (char *tok = strtok_r(buf, " \n", &save); tok && *n < MAX_PINNED; tok = strtok_r(NULL, " \n", &save)) {
			pid_t child = (pid_t)strtol(tok, NULL, 10);
			int cfd = ub_pidfd_open_child(child, pid, pidfd);
			if (cfd < 0)
				continue;
			pinned[(*n)++] = cfd;
			pin_descendants(child, cfd, depth + 1, pinned, n);
		}
	}
	closedir(tasks);
}

void kill_tree(struct req *r)
{
	int pinned[MAX_PINNED];
	size_t npinned = 0;
	if (r->cpid > 0 && !r->c_exited && r->cpidfd >= 0)
		pin_descendants(r->cpid, r->cpidfd, 0, pinned, &npinned);
	if (r->cpidfd >= 0) {
		/* the whole process group C leads (setsid), race-free through the pidfd */
		if (syscall(UB_NR_pidfd_send_signal, r->cpidfd, SIGKILL, NULL, UB_PIDFD_SIGNAL_PROCESS_GROUP) < 0 &&
		    errno == EINVAL && !r->c_exited && r->cpid > 0)
			kill(-r->cpid, SIGKILL); /* before 6.9; C is unreaped, so the number is still its */
		syscall(UB_NR_pidfd_send_signal, r->cpidfd, SIGKILL, NULL, 0);
	}
	for (size_t i = 0; i < npinned; i++) {
		syscall(UB_NR_pidfd_send_signal, pinned[i], SIGKILL, NULL, 0);
		close(pinned[i]);
	}
	if (r->bpidfd >= 0 && !r->b_exited)
		syscall(UB_NR_pidfd_send_signal, r->bpidfd, SIGKILL, NULL, 0);
	if (r->apidfd >= 0 && !r->a_reaped)
		syscall(UB_NR_pidfd_send_signal, r->apidfd, SIGKILL, NULL, 0);
}
