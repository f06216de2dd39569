/*
 * ub-context-selftest: pid reuse against context/, on the real kernel (root).
 *
 * A pid that is reused between two steps cannot be timed from outside, so the
 * reuse is made to happen: each case runs as pid 1 of a fresh pid namespace
 * (with its own /proc), lets a process exit and be reaped, and gives its
 * number to another process at once with clone3(set_tid), as CRIU does.  Then
 * the function under test is called with the number (and the old pidfd):
 *
 *  - ctx_capture_seccomp (issue 16, finding 5): init's pid now names another
 *    process; PTRACE_SEIZE by number attaches to it, and the pidfd check that
 *    follows must leave it running.  The stand-in blocks in sigwaitinfo(),
 *    which fails with EINTR when a PTRACE_INTERRUPT stops it (a plain seize
 *    does not), and reports how often that happened.
 *  - ub_pidfd_open_child (finding 6, the zygote's pin_descendants): a number
 *    read from a children list that now names a process of someone else, or
 *    a parent whose number was reused, is never pinned; with PIDFD_GET_INFO
 *    and with the /proc/<pid>/stat fallback (before 6.13).
 *
 * Prints "FAIL ..." lines (every check with -v), then "N passed, N failed".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "context/context-internal.h"
#include "ub-kernel.h"
#include "basic/file.h"
#include "basic/time.h"

#include <linux/audit.h>
#include <stdint.h>
#include <sys/mount.h>

#include "selftest.h"

/* struct clone_args up to set_tid_size (CLONE_ARGS_SIZE_VER1) */
struct clone_args_v1 {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size;
};

/* A child at pid `want` (0: any), with a pidfd in *pidfd; returns 0 in the child. */
static pid_t clone_at(pid_t want, int *pidfd)
{
	struct clone_args_v1 args;

	memset(&args, 0, sizeof(args));
	args.flags = UB_CLONE_PIDFD;
	args.pidfd = (uint64_t)(uintptr_t)pidfd;
	args.exit_signal = SIGCHLD;
	if (want) {
		args.set_tid = (uint64_t)(uintptr_t)&want;
		args.set_tid_size = 1;
	}
	fflush(stdout);
	return (pid_t)syscall(UB_NR_clone3, &args, sizeof(args));
}

/* clone_at, the child running body(out, arg) with the write end of a pipe
 * whose read end is returned in *rd; -1 if no pipe. */
static pid_t clone_with_pipe(pid_t want, int *pidfd, int *rd, void (*body)(int out, int arg), int arg)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = clone_at(want, pidfd);
	if (pid == 0) {
		close(p[0]);
		body(p[1], arg);
		_exit(0);
	}
	close(p[1]);
	*rd = p[0];
	return pid;
}

static void reap(pid_t pid)
{
	while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
		;
}

static void kill_reap(pid_t pid)
{
	kill(pid, SIGKILL);
	reap(pid);
}

static char proc_state(pid_t pid)
{
	char path[64], *text;
	const char *p;
	char st = '?';

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (ub_read_file_at(AT_FDCWD, path, MAX_PROC_FILE, &text, NULL) < 0)
		return '?';
	p = strrchr(text, ')');
	if (p && p[1] == ' ')
		st = p[2];
	free(text);
	return st;
}

/* ------------------------------------------------------------------------
 * finding 5: capture_seccomp and a reused init pid
 */

/* An allow-everything filter: capture_seccomp has one filter to copy. */
static int allow_all_filter(void)
{
	struct sock_filter insns[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
	struct sock_fprog prog = { .len = 1, .filter = insns };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

/* The stand-in: a filter, then sigwaitinfo(SIGUSR1) until it comes; writes
 * how many times the wait failed with EINTR (a ptrace-stop) to `out`. */
static void __attribute__((noreturn)) stand_in(int out, int unused)
{
	sigset_t set;
	int eintr = 0;

	(void)unused;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	if (allow_all_filter() < 0)
		_exit(2);
	for (;;) {
		int sig = sigwaitinfo(&set, NULL);

		if (sig == SIGUSR1)
			break;
		if (sig < 0 && errno == EINTR)
			eintr++;
		else
			_exit(3);
	}
	if (write(out, &eintr, sizeof(eintr)) != sizeof(eintr))
		_exit(4);
	_exit(0);
}

/* Start the stand-in at pid `want` and wait until it sleeps in sigwaitinfo. */
static pid_t start_stand_in(pid_t want, int *pidfd, int *report)
{
	pid_t pid = clone_with_pipe(want, pidfd, report, stand_in, 0);

	while (pid > 0 && proc_state(pid) != 'S')
		ub_sleep_ms(1);
	return pid;
}

/* How often the stand-in was stopped: SIGUSR1 ends it, it says. */
static int stops_of(pid_t pid, int pidfd, int report)
{
	int eintr = -1;

	syscall(UB_NR_pidfd_send_signal, pidfd, SIGUSR1, NULL, 0);
	if (read(report, &eintr, sizeof(eintr)) != sizeof(eintr))
		eintr = -1;
	reap(pid);
	close(report);
	close(pidfd);
	return eintr;
}

static void case_seccomp_reused_pid(void)
{
	struct ub_context c;
	struct ub_ctx_error e;
	int oldfd = -1, pidfd = -1, report = -1, rc;
	pid_t init, other;

	/* the control: init itself, alive, is stopped once and its filter read */
	init = start_stand_in(0, &pidfd, &report);
	CHECK(init > 0);
	ub_ctx_init(&c);
	c.pid = init;
	c.pidfd = pidfd;
	c.seccomp_mode = 2;
	rc = ctx_capture_seccomp(&c, &e);
	CHECK(rc == 0 && c.nfilters == 1);
	c.pidfd = -1;
	ub_ctx_release(&c);
	CHECK(stops_of(init, pidfd, report) == 1); /* the probe sees a PTRACE_INTERRUPT */

	/* init exits and is reaped; its number goes to another process at once */
	init = clone_at(0, &oldfd);
	if (init == 0) {
		pause();
		_exit(0);
	}
	CHECK(init > 0);
	kill_reap(init);
	other = start_stand_in(init, &pidfd, &report);
	CHECK(other == init);
	ub_ctx_init(&c);
	c.pid = init;
	c.pidfd = oldfd; /* init's pidfd: readable now */
	c.seccomp_mode = 2;
	rc = ctx_capture_seccomp(&c, &e);
	CHECK(rc < 0 && strcmp(e.code, "E_INIT_EXITED") == 0);
	CHECK(c.nfilters == 0);                 /* nothing read from the other process */
	CHECK(proc_state(other) == 'S');        /* not stopped */
	ptrace(PTRACE_DETACH, other, 0, 0);     /* (fails: it runs; our exit would detach it) */
	ub_ctx_release(&c);
	close(oldfd);
	CHECK(stops_of(other, pidfd, report) == 0); /* never interrupted */
	if (verbose)
		printf("     seccomp: %s: %s\n", e.code, e.step);
}

/* ------------------------------------------------------------------------
 * finding 6: ub_pidfd_open_child and reused pids
 */

/* A parent that forks one child and reports the child's pid on `out`; with
 * `reap_it` the child exits at once and is reaped before the report. */
static void __attribute__((noreturn)) parent_of_one(int out, int reap_it)
{
	pid_t k = fork();

	if (k == 0) {
		if (!reap_it)
			pause();
		_exit(0);
	}
	if (k > 0 && reap_it)
		reap(k);
	if (write(out, &k, sizeof(k)) != sizeof(k))
		_exit(1);
	pause();
	_exit(0);
}

static pid_t start_parent(pid_t want, int reap_it, int *pidfd, pid_t *child)
{
	int rd = -1;
	pid_t pid = clone_with_pipe(want, pidfd, &rd, parent_of_one, reap_it);

	*child = -1;
	if (pid > 0 && read(rd, child, sizeof(*child)) != sizeof(*child))
		*child = -1;
	if (rd >= 0)
		close(rd);
	return pid;
}

static void case_open_child(const char *mode)
{
	int ppidfd = -1, xfd = -1, fd;
	pid_t parent, child, x;

	/* a real child is pinned */
	parent = start_parent(0, 0, &ppidfd, &child);
	CHECK(parent > 0 && child > 0);
	fd = ub_pidfd_open_child(child, parent, ppidfd);
	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
	/* not a child of it (ours): refused */
	fd = ub_pidfd_open_child(parent, parent, ppidfd);
	CHECK(fd < 0 && errno == ESRCH);
	kill(child, SIGKILL);
	kill_reap(parent);
	close(ppidfd);

	/* the listed child was reaped by its parent and its number given to a
	 * process of someone else (ours) before the open: refused */
	parent = start_parent(0, 1, &ppidfd, &child);
	CHECK(parent > 0 && child > 0);
	x = clone_at(child, &xfd);
	if (x == 0) {
		pause();
		_exit(0);
	}
	CHECK(x == child);
	fd = ub_pidfd_open_child(child, parent, ppidfd);
	CHECK(fd < 0 && errno == ESRCH);
	if (fd >= 0)
		close(fd);
	kill_reap(x);
	close(xfd);
	kill_reap(parent);
	close(ppidfd);

	/* the parent exited, and its number went to another process whose child
	 * is listed: ppid matches the number, but the parent's pidfd has exited */
	parent = clone_at(0, &ppidfd);
	if (parent == 0) {
		pause();
		_exit(0);
	}
	kill_reap(parent);
	x = start_parent(parent, 0, &xfd, &child);
	CHECK(x == parent && child > 0);
	fd = ub_pidfd_open_child(child, parent, ppidfd);
	CHECK(fd < 0 && errno == ESRCH);
	if (fd >= 0)
		close(fd);
	fd = ub_pidfd_open_child(child, x, xfd); /* the control: with the live parent's pidfd */
	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
	kill(child, SIGKILL);
	kill_reap(x);
	close(xfd);
	close(ppidfd);
	if (verbose)
		printf("     open_child (%s) done\n", mode);
}

/* ------------------------------------------------------------------------
 * each case as pid 1 of a fresh pid namespace, with its own /proc
 */

static void isolated(void (*fn)(void))
{
	int p[2], counts[2] = { 0, 1 };
	pid_t w;

	if (pipe(p) < 0) {
		failed++;
		return;
	}
	fflush(stdout);
	w = fork();
	if (w == 0) {
		pid_t init;

		close(p[0]);
		if (unshare(CLONE_NEWPID | CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
			printf("FAIL unshare/mount: %s\n", strerror(errno));
			_exit(1);
		}
		init = fork();
		if (init == 0) {
			if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
				printf("FAIL mount /proc: %s\n", strerror(errno));
				_exit(1);
			}
			prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
			passed = failed = 0;
			fn();
			counts[0] = passed;
			counts[1] = failed;
			fflush(stdout);
			if (write(p[1], counts, sizeof(counts)) != sizeof(counts))
				_exit(1);
			_exit(0);
		}
		reap(init);
		_exit(0);
	}
	close(p[1]);
	if (w < 0 || read(p[0], counts, sizeof(counts)) != sizeof(counts)) {
		printf("FAIL a case died before reporting\n");
		counts[0] = 0;
		counts[1] = 1;
	}
	close(p[0]);
	if (w > 0)
		reap(w);
	passed += counts[0];
	failed += counts[1];
}

static void open_child_info(void)
{
	ctx_compat_have[UB_COMPAT_PIDFD_INFO] = 1;
	case_open_child("PIDFD_GET_INFO");
}

static void open_child_fallback(void)
{
	ctx_compat_have[UB_COMPAT_PIDFD_INFO] = 0; /* as before 6.13 */
	case_open_child("/proc/<pid>/stat");
}

int main(int argc, char **argv)
{
	selftest_init(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	ub_compat_init();
	isolated(case_seccomp_reused_pid);
	if (ub_compat_has(UB_COMPAT_PIDFD_INFO))
		isolated(open_child_info);
	else
		printf("note: no PIDFD_GET_INFO on this kernel: the fallback only\n");
	isolated(open_child_fallback);
	return selftest_done();
}
