/*
 * upcall-mount-watch: copies what it reads from fd 0, an fanotify group that
 * reports mount events (FAN_REPORT_MNT), to stdout, a pipe to the broker.
 *
 * Node cannot wait on an fanotify fd: libuv does not poll an fd it cannot
 * classify (net.Socket refuses it), and a blocking read in the thread pool
 * would hold a pool thread for good and could not be cancelled. So the broker
 * makes the group and adds its marks itself (fanotify_init, fanotify_mark
 * through koffi: src/broker/mount-watcher.ts) and hands the group's fd to
 * this pump as stdin; the marks belong to the group, so the broker can add
 * more at any time. Events reach the broker's event loop as a pipe's data.
 *
 * The group reports mount events only: they carry no file descriptor (fd is
 * FAN_NOFD), so this process never holds a file of anyone's. It parses
 * nothing (the broker does, src/broker/mount-watch-events.ts), reads whole
 * events as the kernel hands them out, and writes them on in full.
 *
 * It dies with the broker (PR_SET_PDEATHSIG), ends at EOF on stdout's reader
 * (EPIPE / SIGPIPE), and exits 2 on a read error, 3 on a write error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	/* Room for many events (40 bytes each for a mount event); the kernel hands out whole events only. */
	static char buf[64 * 1024] __attribute__((aligned(8)));
	pid_t parent = getppid();

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: upcall-mount-watch <FANOTIFY_GROUP >PIPE (started by the broker)\n");
		return 64;
	}
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		return 1;
	for (;;) {
		ssize_t n = read(0, buf, sizeof(buf));
		size_t off = 0;

		if (n < 0) {
			struct pollfd p = { .fd = 0, .events = POLLIN };

			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && poll(&p, 1, -1) >= 0)
				continue;
			fprintf(stderr, "upcall-mount-watch: read: %s\n", strerror(errno));
			return 2;
		}
		if (n == 0)
			return 0;
		while (off < (size_t)n) {
			ssize_t w = write(1, buf + off, (size_t)n - off);

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				fprintf(stderr, "upcall-mount-watch: write: %s\n", strerror(errno));
				return 3;
			}
			off += (size_t)w;
		}
	}
}
