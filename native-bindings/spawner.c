/*
 * upcall-spawner: run a program inside the namespaces of the process behind an
 * inherited pidfd.  Namespace entry lives here, in a single-threaded program,
 * because setns(2) into a user or mount namespace fails with EINVAL in a
 * multi-threaded process such as Node.  Shape after util-linux nsenter.c.
 *
 *   upcall-spawner exec --pidfd FD [--error-fd FD] [--cwd DIR] -- PROG [ARGS...]
 *
 * Exit status: 125 spawner failure, 126 exec failed, 127 program not found,
 * otherwise the program's own status (128+N when killed by signal N).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ub-kernel.h"

#define SPAWNER_VERSION "0.1.0"
#define EXIT_SPAWNER 125
#define EXIT_CANNOT_EXEC 126
#define EXIT_NOT_FOUND 127
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* struct pidfd_info, v0 layout (64 bytes): include/uapi/linux/pidfd.h */
struct ub_pidfd_info {
	uint64_t mask, cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	int32_t exit_code;
};
_Static_assert(sizeof(struct ub_pidfd_info) == 64, "pidfd_info v0 is 64 bytes");

/* Target namespace vs. ours: for pid and time the target's active namespace is
 * compared with our *_for_children one, since that is what setns() changes. */
static const struct namespace_type {
	const char *name;
	int nstype;
	unsigned long target_ioctl;
	unsigned long self_ioctl;
} namespace_types[] = {
	{ "user",   UB_CLONE_NEWUSER,   UB_PIDFD_GET_USER_NAMESPACE,   UB_PIDFD_GET_USER_NAMESPACE },
	{ "mnt",    UB_CLONE_NEWNS,     UB_PIDFD_GET_MNT_NAMESPACE,    UB_PIDFD_GET_MNT_NAMESPACE },
	{ "pid",    UB_CLONE_NEWPID,    UB_PIDFD_GET_PID_NAMESPACE,    UB_PIDFD_GET_PID_FOR_CHILDREN_NAMESPACE },
	{ "net",    UB_CLONE_NEWNET,    UB_PIDFD_GET_NET_NAMESPACE,    UB_PIDFD_GET_NET_NAMESPACE },
	{ "uts",    UB_CLONE_NEWUTS,    UB_PIDFD_GET_UTS_NAMESPACE,    UB_PIDFD_GET_UTS_NAMESPACE },
	{ "ipc",    UB_CLONE_NEWIPC,    UB_PIDFD_GET_IPC_NAMESPACE,    UB_PIDFD_GET_IPC_NAMESPACE },
	{ "cgroup", UB_CLONE_NEWCGROUP, UB_PIDFD_GET_CGROUP_NAMESPACE, UB_PIDFD_GET_CGROUP_NAMESPACE },
	{ "time",   UB_CLONE_NEWTIME,   UB_PIDFD_GET_TIME_NAMESPACE,   UB_PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE },
};

static const int forwarded_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT };

static int error_fd = -1;
static volatile pid_t child_pid;

static ssize_t xwrite(int fd, const char *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += n;
	}
	return done;
}

/* Append s to out as the body of a JSON string; returns the new length. */
static size_t json_escape(char *out, size_t pos, size_t cap, const char *s)
{
	for (; *s && pos + 7 < cap; s++) {
		unsigned char c = *s;
		if (c == '"' || c == '\\')
			pos += snprintf(out + pos, cap - pos, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			pos += snprintf(out + pos, cap - pos, "\\u%04x", c);
		else
			out[pos++] = c;
	}
	out[pos] = '\0';
	return pos;
}

static void report_error(const char *code, const char *step, int err)
{
	char line[1024];
	int saved = errno;
	size_t n;

	n = snprintf(line, sizeof(line), "upcall-spawner: %s: %s: %s\n", code, step, strerror(err));
	xwrite(STDERR_FILENO, line, n < sizeof(line) ? n : sizeof(line) - 1);
	if (error_fd >= 0) {
		n = snprintf(line, sizeof(line), "{\"error\":{\"code\":\"%s\",\"step\":\"", code);
		n = json_escape(line, n, sizeof(line) - 40, step);
		n += snprintf(line + n, sizeof(line) - n, "\",\"errno\":%d,\"message\":\"", err);
		n = json_escape(line, n, sizeof(line) - 8, strerror(err));
		n += snprintf(line + n, sizeof(line) - n, "\"}}\n");
		xwrite(error_fd, line, n);
	}
	errno = saved;
}

static void __attribute__((noreturn)) fail(const char *code, const char *step, int err)
{
	report_error(code, step, err);
	exit(EXIT_SPAWNER);
}

/* A failing call on the target: ESRCH means it is gone, whatever the step. */
static void __attribute__((noreturn)) fail_target(const char *code, const char *step)
{
	fail(errno == ESRCH ? "E_INIT_EXITED" : code, step, errno);
}

static void __attribute__((noreturn)) print_help(void)
{
	fputs("\nUsage:\n"
	      " upcall-spawner exec --pidfd <fd> [options] [--] <program> [<argument>...]\n"
	      " upcall-spawner --help | --version\n"
	      "\nRun a program in the namespaces of the process referred to by a pidfd.\n"
	      "\nOptions:\n"
	      " -p, --pidfd <fd>       inherited pidfd of the target process (required)\n"
	      " -e, --error-fd <fd>    also report failures as one JSON line on <fd>\n"
	      " -w, --cwd <dir>        working directory after entry (default: /)\n"
	      "\n -h, --help             display this help\n"
	      " -V, --version          display version\n"
	      "\nExit status: 125 spawner failure, 126 cannot execute, 127 program not found,\n"
	      "otherwise the program's status (128+N if it was killed by signal N).\n", stdout);
	exit(EXIT_SUCCESS);
}

static void __attribute__((noreturn)) bad_option(int c, char **argv)
{
	char step[128];

	snprintf(step, sizeof(step), "usage: %s '%s'", c == ':' ? "option needs an argument" : "unknown option",
		 argv[optind - 1]);
	fail("E_BAD_REQUEST", step, EINVAL);
}

static int parse_fd(const char *arg, const char *step)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < 3 || v > INT_MAX)
		fail("E_BAD_REQUEST", step, EINVAL);
	if (fcntl((int)v, F_GETFD) < 0)
		fail("E_BAD_REQUEST", step, errno);
	return (int)v;
}

static int target_exited(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	return poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP));
}

static void check_target(int pidfd)
{
	struct ub_pidfd_info info = { .mask = UB_PIDFD_INFO_PID };

	if (ioctl(pidfd, UB_PIDFD_GET_INFO, &info) < 0)
		fail_target("E_NOT_PIDFD", "ioctl(PIDFD_GET_INFO)");
	if (target_exited(pidfd))
		fail("E_INIT_EXITED", "poll(pidfd)", ESRCH);
}

/* fstat() of one namespace of the process behind pidfd; -1 if the kernel lacks the type. */
static int stat_namespace(int pidfd, const struct namespace_type *nt, int self, struct stat *st)
{
	int fd = ioctl(pidfd, self ? nt->self_ioctl : nt->target_ioctl, 0);
	char step[64];

	if (fd < 0 && errno == EOPNOTSUPP)
		return -1;
	snprintf(step, sizeof(step), "open %s namespace of %s", nt->name, self ? "self" : "target");
	if (fd < 0)
		fail_target("E_NS_OPEN", step);
	if (fstat(fd, st) < 0)
		fail("E_NS_OPEN", step, errno);
	close(fd);
	return 0;
}

/* Only the namespaces the target does not already share with us: setns()
 * into one's own user namespace fails with EINVAL. */
static int compute_namespace_mask(int pidfd)
{
	int self, mask = 0;
	size_t i;

	self = syscall(UB_NR_pidfd_open, getpid(), 0);
	if (self < 0)
		fail("E_NS_OPEN", "pidfd_open(self)", errno);
	for (i = 0; i < ARRAY_SIZE(namespace_types); i++) {
		const struct namespace_type *nt = &namespace_types[i];
		struct stat theirs, ours;

		if (stat_namespace(pidfd, nt, 0, &theirs) < 0 || stat_namespace(self, nt, 1, &ours) < 0)
			continue;
		if (theirs.st_dev != ours.st_dev || theirs.st_ino != ours.st_ino)
			mask |= nt->nstype;
	}
	close(self);
	return mask;
}

/* setgroups() is refused in a user namespace whose setgroups file says "deny". */
static int setgroups_denied(int procfd)
{
	char buf[16] = "";
	int fd = procfd < 0 ? -1 : openat(procfd, "self/setgroups", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (read(fd, buf, sizeof(buf) - 1) < 0)
		buf[0] = '\0';
	close(fd);
	return strncmp(buf, "deny", 4) == 0;
}

static void become_namespace_root(int procfd)
{
	if (setgroups(0, NULL) < 0 && !(errno == EPERM && setgroups_denied(procfd)))
		fail("E_CREDS", "setgroups", errno);
	if (setresgid(0, 0, 0) < 0)
		fail("E_CREDS", "setresgid", errno);
	if (setresuid(0, 0, 0) < 0)
		fail("E_CREDS", "setresuid", errno);
}

static void forward_signal(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

static void __attribute__((noreturn)) exec_child(char **argv)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t all;
	int sig;

	for (sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL); /* EINVAL for SIGKILL/SIGSTOP/libc-internal: fine */
	sigemptyset(&all);
	if (sigprocmask(SIG_SETMASK, &all, NULL) < 0)
		goto fail_setup;
	/* Every fd >= 3 goes (pidfd included), except the error fd: it stays open
	 * to report an exec failure and closes by FD_CLOEXEC at a successful exec. */
	if (error_fd < 0) {
		if (syscall(UB_NR_close_range, 3, ~0U, 0) < 0)
			goto fail_setup;
	} else {
		if (error_fd > 3 && syscall(UB_NR_close_range, 3, error_fd - 1, 0) < 0)
			goto fail_setup;
		if (syscall(UB_NR_close_range, error_fd + 1, ~0U, 0) < 0 ||
		    fcntl(error_fd, F_SETFD, FD_CLOEXEC) < 0)
			goto fail_setup;
	}

	execvp(argv[0], argv);
	report_error("E_EXEC", "execvp", errno);
	_exit(errno == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC);
fail_setup:
	report_error("E_FORK", "prepare child", errno);
	_exit(EXIT_SPAWNER);
}

static void __attribute__((noreturn)) wait_child(void)
{
	struct sigaction sa = { .sa_handler = forward_signal, .sa_flags = SA_RESTART };
	sigset_t none;
	int status;
	size_t i;

	sigemptyset(&sa.sa_mask);
	for (i = 0; i < ARRAY_SIZE(forwarded_signals); i++)
		sigaction(forwarded_signals[i], &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	while (waitpid(child_pid, &status, 0) < 0)
		if (errno != EINTR)
			fail("E_FORK", "waitpid", errno);
	if (WIFSIGNALED(status))
		exit(128 + WTERMSIG(status));
	exit(WEXITSTATUS(status));
}

static void __attribute__((noreturn)) cmd_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "pidfd",    required_argument, NULL, 'p' },
		{ "error-fd", required_argument, NULL, 'e' },
		{ "cwd",      required_argument, NULL, 'w' },
		{ "help",     no_argument,       NULL, 'h' },
		{ "version",  no_argument,       NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char *cwd = "/", *pidfd_arg = NULL, *error_fd_arg = NULL;
	int c, pidfd, mask, procfd = -1;
	sigset_t block;
	size_t i;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+:p:e:w:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': pidfd_arg = optarg; break;
		case 'e': error_fd_arg = optarg; break;
		case 'w': cwd = optarg; break;
		case 'h': print_help();
		case 'V': puts("upcall-spawner " SPAWNER_VERSION); exit(EXIT_SUCCESS);
		default: bad_option(c, argv);
		}
	}
	if (error_fd_arg) /* first, so that later usage errors reach it too */
		error_fd = parse_fd(error_fd_arg, "usage: --error-fd");
	if (!pidfd_arg)
		fail("E_BAD_REQUEST", "usage: --pidfd is required", EINVAL);
	pidfd = parse_fd(pidfd_arg, "usage: --pidfd");
	if (optind >= argc)
		fail("E_BAD_REQUEST", "usage: no program given", EINVAL);
	if (pidfd == error_fd)
		fail("E_BAD_REQUEST", "usage: --pidfd and --error-fd are the same fd", EINVAL);

	check_target(pidfd);
	if (prctl(UB_PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		fail("E_CREDS", "prctl(PR_SET_DUMPABLE)", errno);
	mask = compute_namespace_mask(pidfd);
	if (mask & UB_CLONE_NEWUSER) /* our /proc, to read the entered user ns's setgroups */
		procfd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (mask && setns(pidfd, mask) < 0)
		fail_target("E_SETNS", "setns");
	if (mask & UB_CLONE_NEWUSER)
		become_namespace_root(procfd);
	if (chdir(cwd) < 0)
		fail("E_CHDIR", "chdir", errno);

	/* Block forwarded signals until the parent knows the child's pid; an
	 * inherited SIG_IGN for SIGCHLD would make waitpid() fail with ECHILD. */
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&block);
	for (i = 0; i < ARRAY_SIZE(forwarded_signals); i++)
		sigaddset(&block, forwarded_signals[i]);
	sigprocmask(SIG_BLOCK, &block, NULL);
	child_pid = fork();
	if (child_pid < 0)
		fail(target_exited(pidfd) ? "E_INIT_EXITED" : "E_FORK", "fork", errno);
	if (child_pid == 0)
		exec_child(argv + optind);
	syscall(UB_NR_close_range, 3, ~0U, 0);
	error_fd = -1;
	wait_child();
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help",    no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'h': print_help();
		case 'V': puts("upcall-spawner " SPAWNER_VERSION); return EXIT_SUCCESS;
		default: bad_option(c, argv);
		}
	}
	if (optind >= argc || strcmp(argv[optind], "exec") != 0)
		fail("E_BAD_REQUEST", optind >= argc ? "usage: no command given" : "usage: unknown command", EINVAL);
	cmd_exec(argc - optind, argv + optind);
}
