/*
 * upcall-mount-in: run a mount helper (mount(8)) in a container's mount and
 * network namespaces, under that process's root, but NOT in its user
 * namespace: CIFS and NFS need CAP_SYS_ADMIN in the initial user namespace,
 * and the helper must resolve the server's name with the container's files
 * and network (`upcall-broker mount --for-pid`, docs/walk-rule.md case 9).
 *
 *   upcall-mount-in --pidfd FD [--] PROG [ARGS...]
 *
 * FD is an inherited pidfd of the target process. setns(2) into a mount
 * namespace needs a single-threaded caller (EINVAL otherwise): hence a C
 * program, never Node. Errors: one line on stderr naming the step and errno,
 * exit 125 (setup failed) or 127 (exec failed), as nsenter and env do.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ub-kernel.h"
#include "ub-wire.h"
#include "context/context.h" /* ub_pidfd_pid, UB_CTX_DEFAULT_PATH */

static void die(const char *step, const char *what) {
	fprintf(stderr, "upcall-mount-in: %s %s: %s\n", step, what, strerror(errno));
	exit(UB_EXIT_SPAWNER);
}

/* The target's root, opened by pid, then checked: a pidfd that still signals means the pid was its. */
static int open_target_root(int pidfd, pid_t pid) {
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/root", pid);
	int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) die("open", path);
	if (syscall(UB_NR_pidfd_send_signal, pidfd, 0, NULL, 0) < 0) die("pidfd_send_signal", "(the target exited)");
	return fd;
}

/* setns with the pidfd (both namespaces at once, Linux 5.8), then the target's root as ours. */
static void enter_target(int pidfd, int rootfd) {
	if (setns(pidfd, UB_CLONE_NEWNS | UB_CLONE_NEWNET) < 0) die("setns", "(mnt, net)");
	if (fchdir(rootfd) < 0) die("fchdir", "(target root)");
	if (chroot(".") < 0) die("chroot", "(target root)");
	if (chdir("/") < 0) die("chdir", "/");
	close(rootfd);
	close(pidfd);
}

int main(int argc, char **argv) {
	int i = 1, pidfd = -1;
	if (i + 1 < argc && strcmp(argv[i], "--pidfd") == 0) {
		pidfd = atoi(argv[i + 1]);
		i += 2;
	}
	if (i < argc && strcmp(argv[i], "--") == 0) i++;
	if (pidfd < 3 || i >= argc) {
		fprintf(stderr, "usage: upcall-mount-in --pidfd FD [--] PROG [ARGS...]\n");
		return 2;
	}
	pid_t pid = ub_pidfd_pid(pidfd); /* -1 once it has exited */
	if (pid <= 0) {
		errno = ESRCH;
		die("pidfd", "names no live process");
	}
	enter_target(pidfd, open_target_root(pidfd, pid));
	setenv("PATH", UB_CTX_DEFAULT_PATH, 1);
	execvp(argv[i], &argv[i]);
	fprintf(stderr, "upcall-mount-in: exec %s: %s\n", argv[i], strerror(errno));
	return UB_EXIT_NOT_FOUND;
}
