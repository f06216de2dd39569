/*
 * upcall-spawner: run a program in the context of a container's init (its
 * namespaces, root, credentials, capabilities, cgroups, rlimits, seccomp
 * filters...: context/, shared with the zygote).  Namespace entry lives
 * here, in a single-threaded program, because setns(2) into a user or mount
 * namespace fails with EINVAL in a multi-threaded process such as Node.
 * Shape after util-linux nsenter.c.
 *
 *   upcall-spawner exec (--pidfd FD | --pid P --start-time T [--pidns INO])
 *                       [--error-fd FD] [--cwd DIR] -- PROG [ARGS...]
 *   upcall-spawner builtin (same options) -- NAME
 *
 * builtin runs native code of ours after entering instead of a program (no
 * exec: no host path runs inside): "netrelay" (netrelay.h) for DNS.
 *
 * Unlike the zygote, the program is the spawner's own child (the spawner
 * waits for it and forwards signals, as a terminal session needs).
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

#include "context/context.h"
#include "netrelay.h"
#include "ub-kernel.h"
#include "ub-wire.h"
#include "ub-json.h"
#include "basic/file.h"

#define SPAWNER_VERSION "0.2.0"
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const int forwarded_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT };

static int run_netrelay(void)
{
	return netrelay_serve(STDIN_FILENO, STDOUT_FILENO) == 0 ? 0 : 1;
}

static const struct builtin {
	const char *name;
	int (*run)(void);
} builtins[] = {
	{ "netrelay", run_netrelay },
};

static int builtin_mode;              /* the builtin command */
static const struct builtin *builtin; /* which one */

static int error_fd = -1;
static volatile pid_t child_pid;

static void report_error(const char *code, const char *step, int err)
{
	char line[1024];
	int saved = errno;
	size_t n;

	n = snprintf(line, sizeof(line), "upcall-spawner: %s: %s: %s\n", code, step, strerror(err));
	ub_write_all(STDERR_FILENO, line, n < sizeof(line) ? n : sizeof(line) - 1);
	if (error_fd >= 0) {
		n = snprintf(line, sizeof(line), "{\"error\":{\"code\":\"%s\",\"step\":\"", code);
		n = ub_json_escape(line, n, sizeof(line) - 40, step);
		n += snprintf(line + n, sizeof(line) - n, "\",\"errno\":%d,\"message\":\"", err);
		n = ub_json_escape(line, n, sizeof(line) - 8, strerror(err));
		n += snprintf(line + n, sizeof(line) - n, "\"}}\n");
		ub_write_all(error_fd, line, n);
	}
	errno = saved;
}

static void __attribute__((noreturn)) fail(const char *code, const char *step, int err)
{
	report_error(code, step, err);
	exit(UB_EXIT_SPAWNER);
}

static void __attribute__((noreturn)) fail_ctx(const struct ub_ctx_error *e)
{
	fail(e->code, e->step, e->err);
}

static void __attribute__((noreturn)) print_help(void)
{
	fputs("\nUsage:\n"
	      " upcall-spawner exec --pidfd <fd> [options] [--] <program> [<argument>...]\n"
	      " upcall-spawner exec --pid <pid> --start-time <ticks> [options] [--] <program> [<argument>...]\n"
	      " upcall-spawner builtin (--pidfd <fd> | --pid <pid> --start-time <ticks>) [options] [--] netrelay\n"
	      " upcall-spawner --help | --version\n"
	      "\nRun a program in the context of a process (a container's init): its namespaces,\n"
	      "root, credentials, capabilities, cgroups, rlimits, seccomp filters and LSM label.\n"
	      "\nOptions:\n"
	      " -p, --pidfd <fd>       inherited pidfd of the target process\n"
	      " -P, --pid <pid>        target pid, instead of --pidfd (with --start-time)\n"
	      " -s, --start-time <t>   field 22 of /proc/<pid>/stat, checked against the target\n"
	      " -n, --pidns <inode>    also check the target's pid namespace inode\n"
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

static void forward_signal(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

/* The child: the last steps of the context (context.h), then exec.  It keeps
 * the terminal: no setsid(), so a --tty session still has job control. */
static void __attribute__((noreturn)) exec_child(struct ub_context *ctx, char **argv)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	struct ub_ctx_error e;
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
	ctx->pidfd = ctx->procfd = ctx->rootfd = ctx->lsm_fd = -1; /* closed above */
	if (ub_ctx_prepare_final(ctx, &e) < 0 || ub_ctx_seal(ctx, &e) < 0) {
		report_error(e.code, e.step, e.err);
		_exit(UB_EXIT_SPAWNER);
	}
	if (builtin) {
		/* no exec to close it: EOF on the error fd says "running" */
		if (error_fd >= 0)
			close(error_fd);
		error_fd = -1;
		_exit(builtin->run());
	}
	ub_ctx_exec(argv, environ, getenv("PATH"), &e);
	report_error(e.code, e.step, e.err);
	_exit(e.err == ENOENT ? UB_EXIT_NOT_FOUND : UB_EXIT_CANNOT_EXEC);
fail_setup:
	report_error("E_FORK", "prepare child", errno);
	_exit(UB_EXIT_SPAWNER);
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

static unsigned long long parse_number(const char *arg, const char *step)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(arg, &end, 10);
	if (errno || end == arg || *end || *arg == '-')
		fail("E_BAD_REQUEST", step, EINVAL);
	return v;
}

/* The target from the options: --pidfd, or --pid with --start-time (node-pty
 * cannot pass extra fds, so the CLI's --tty mode names the init by pid). */
static void parse_target(struct ub_ctx_target *t, const char *pidfd_arg, const char *pid_arg,
			 const char *start_arg, const char *pidns_arg)
{
	if (!pidfd_arg == !pid_arg)
		fail("E_BAD_REQUEST", pidfd_arg ? "usage: --pidfd and --pid exclude each other"
						 : "usage: --pidfd or --pid is required", EINVAL);
	if (pid_arg && !start_arg)
		fail("E_BAD_REQUEST", "usage: --pid needs --start-time", EINVAL);
	t->pidfd = pidfd_arg ? parse_fd(pidfd_arg, "usage: --pidfd") : -1;
	if (pid_arg) {
		unsigned long long pid = parse_number(pid_arg, "usage: --pid");

		if (pid == 0 || pid > INT_MAX)
			fail("E_BAD_REQUEST", "usage: --pid", EINVAL);
		t->pid = (pid_t)pid;
	}
	t->start_time = start_arg ? parse_number(start_arg, "usage: --start-time") : 0;
	t->pidns_ino = pidns_arg ? parse_number(pidns_arg, "usage: --pidns") : 0;
	if (pid_arg && t->start_time == 0)
		fail("E_BAD_REQUEST", "usage: --start-time", EINVAL);
}

/* Everything up to the fork (context.h): identity, capture, outside steps,
 * then entry.  A target in all our namespaces is the host: no context copy,
 * as before (the broker names itself for host contexts). */
static void enter_context(struct ub_context *ctx, const struct ub_ctx_target *t, const char *cwd)
{
	struct ub_ctx_error e;

	ub_ctx_init(ctx);
	if (ub_ctx_open(ctx, t, &e) < 0 || ub_ctx_namespace_mask(ctx, &e) < 0)
		fail_ctx(&e);
	ctx->host = ctx->nsmask == 0;
	if (ub_ctx_capture(ctx, &e) < 0 || ub_ctx_apply_outside(ctx, &e) < 0 || ub_ctx_enter(ctx, cwd, &e) < 0)
		fail_ctx(&e);
}

static void __attribute__((noreturn)) cmd_exec(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "pidfd",      required_argument, NULL, 'p' },
		{ "pid",        required_argument, NULL, 'P' },
		{ "start-time", required_argument, NULL, 's' },
		{ "pidns",      required_argument, NULL, 'n' },
		{ "error-fd",   required_argument, NULL, 'e' },
		{ "cwd",        required_argument, NULL, 'w' },
		{ "help",       no_argument,       NULL, 'h' },
		{ "version",    no_argument,       NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char *cwd = "/", *pidfd_arg = NULL, *error_fd_arg = NULL, *pid_arg = NULL, *start_arg = NULL,
		   *pidns_arg = NULL;
	struct ub_ctx_target target = { .pidfd = -1 };
	struct ub_context ctx;
	sigset_t block;
	size_t i;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+:p:P:s:n:e:w:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'p': pidfd_arg = optarg; break;
		case 'P': pid_arg = optarg; break;
		case 's': start_arg = optarg; break;
		case 'n': pidns_arg = optarg; break;
		case 'e': error_fd_arg = optarg; break;
		case 'w': cwd = optarg; break;
		case 'h': print_help();
		case 'V': puts("upcall-spawner " SPAWNER_VERSION); exit(EXIT_SUCCESS);
		default: bad_option(c, argv);
		}
	}
	if (error_fd_arg) /* first, so that later usage errors reach it too */
		error_fd = parse_fd(error_fd_arg, "usage: --error-fd");
	parse_target(&target, pidfd_arg, pid_arg, start_arg, pidns_arg);
	if (optind >= argc)
		fail("E_BAD_REQUEST", "usage: no program given", EINVAL);
	if (target.pidfd >= 0 && target.pidfd == error_fd)
		fail("E_BAD_REQUEST", "usage: --pidfd and --error-fd are the same fd", EINVAL);
	if (builtin_mode) {
		for (i = 0; i < ARRAY_SIZE(builtins) && strcmp(argv[optind], builtins[i].name) != 0; i++)
			;
		if (i == ARRAY_SIZE(builtins))
			fail("E_BAD_REQUEST", "usage: unknown builtin (known: netrelay)", EINVAL);
		builtin = &builtins[i];
	}

	enter_context(&ctx, &target, cwd);

	/* Block forwarded signals until the parent knows the child's pid; an
	 * inherited SIG_IGN for SIGCHLD would make waitpid() fail with ECHILD. */
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&block);
	for (i = 0; i < ARRAY_SIZE(forwarded_signals); i++)
		sigaddset(&block, forwarded_signals[i]);
	sigprocmask(SIG_BLOCK, &block, NULL);
	/* the pid namespace applies to children only: fork */
	child_pid = fork();
	if (child_pid < 0)
		fail(ub_ctx_target_exited(ctx.pidfd) ? "E_INIT_EXITED" : "E_FORK", "fork", errno);
	if (child_pid == 0)
		exec_child(&ctx, argv + optind);
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
	if (optind >= argc || (strcmp(argv[optind], "exec") != 0 && strcmp(argv[optind], "builtin") != 0))
		fail("E_BAD_REQUEST", optind >= argc ? "usage: no command given" : "usage: unknown command", EINVAL);
	builtin_mode = strcmp(argv[optind], "builtin") == 0;
	cmd_exec(argc - optind, argv + optind);
}
