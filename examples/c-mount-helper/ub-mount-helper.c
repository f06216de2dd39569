/*
 * ub-mount-helper: example filesystem helper in C.  Mounts a filesystem and
 * registers the mount with upcall-broker (native-bindings/include/ub-client.h), so
 * that later upcalls for it run inside the caller's container.
 *
 *   ub-mount-helper [--socket PATH] [--timeout MS] [--fstype TYPE] [--source SRC]
 *                   [--options OPTS] [--no-mount] MOUNTPOINT
 *   ub-mount-helper [--socket PATH] [--timeout MS] --unregister ID
 *
 * Registration prints the registration id on stdout.  Nothing is left half
 * done: when the broker refuses or cannot be reached after the mount
 * succeeded, the mount is undone before exiting.
 *
 * Exit status: 0 ok, 1 usage, 2 mount failed (or MOUNTPOINT unusable),
 * 3 the broker refused or could not be reached.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ub-client.h"

#define EXIT_USAGE 1
#define EXIT_MOUNT 2
#define EXIT_BROKER 3

#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000
#endif

static const char *prog = "ub-mount-helper";

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [--socket PATH] [--timeout MS] [--fstype TYPE] [--source SRC]\n"
		"       %*s [--options OPTS] [--no-mount] MOUNTPOINT\n"
		"       %s [--socket PATH] [--timeout MS] --unregister ID\n"
		"\n"
		"Mounts TYPE (default tmpfs, options size=1m) at MOUNTPOINT, registers the mount\n"
		"with upcall-broker and prints the registration id.  --no-mount registers an\n"
		"existing mount.  --unregister removes registration ID.\n"
		"\n"
		"  -s, --socket PATH    broker socket (default %s)\n"
		"  -T, --timeout MS     connect and request timeout (default %d)\n"
		"  -t, --fstype TYPE    filesystem type (default tmpfs)\n"
		"  -S, --source SRC     mount source (default: TYPE)\n"
		"  -o, --options OPTS   comma-separated mount options; ro, nosuid, nodev, noexec,\n"
		"                       noatime, ... become mount flags, the rest is fs data\n"
		"  -n, --no-mount       MOUNTPOINT is already mounted: only register it\n"
		"  -u, --unregister ID  unregister ID\n"
		"  -h, --help\n"
		"\n"
		"exit status: 0 ok, 1 usage, 2 mount failed, 3 broker refused or unreachable\n",
		prog, (int)strlen(prog), "", prog, UB_DEFAULT_SOCKET, UB_DEFAULT_TIMEOUT_MS);
}

static void broker_error(const struct ub_error *err)
{
	fprintf(stderr, "%s: %s: %s\n", prog, err->code[0] ? err->code : "E_UNAVAILABLE", err->message);
}

/* mount(8)-style options: flags into *flags, the rest into data (which has
 * room for strlen(opts) + 1 bytes). */
static void parse_options(const char *opts, unsigned long *flags, char *data)
{
	static const struct { const char *name; unsigned long set, clear; } table[] = {
		{ "ro", MS_RDONLY, 0 },        { "rw", 0, MS_RDONLY },
		{ "nosuid", MS_NOSUID, 0 },    { "suid", 0, MS_NOSUID },
		{ "nodev", MS_NODEV, 0 },      { "dev", 0, MS_NODEV },
		{ "noexec", MS_NOEXEC, 0 },    { "exec", 0, MS_NOEXEC },
		{ "sync", MS_SYNCHRONOUS, 0 }, { "async", 0, MS_SYNCHRONOUS },
		{ "dirsync", MS_DIRSYNC, 0 },  { "silent", MS_SILENT, 0 },
		{ "noatime", MS_NOATIME, 0 },  { "atime", 0, MS_NOATIME },
		{ "nodiratime", MS_NODIRATIME, 0 }, { "diratime", 0, MS_NODIRATIME },
		{ "relatime", MS_RELATIME, 0 }, { "norelatime", 0, MS_RELATIME },
		{ "strictatime", MS_STRICTATIME, 0 }, { "lazytime", MS_LAZYTIME, 0 },
		{ "defaults", 0, 0 },
	};
	const char *p = opts;

	*flags = 0;
	data[0] = '\0';
	while (*p) {
		size_t n = strcspn(p, ",");
		size_t i;

		for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
			if (strlen(table[i].name) == n && strncmp(p, table[i].name, n) == 0) {
				*flags = (*flags | table[i].set) & ~table[i].clear;
				break;
			}
		}
		if (i == sizeof(table) / sizeof(table[0]) && n > 0) {
			if (data[0])
				strcat(data, ",");
			strncat(data, p, n);
		}
		p += n;
		if (*p == ',')
			p++;
	}
}

/* Undo our mount; a busy one is detached.  Returns 0 or -1 (reported). */
static int undo_mount(const char *target)
{
	if (umount2(target, UMOUNT_NOFOLLOW) == 0)
		return 0;
	if (errno == EBUSY && umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
		return 0;
	fprintf(stderr, "%s: cannot undo the mount on %s: %s (it is left in place)\n", prog, target,
		strerror(errno));
	return -1;
}

static int is_mount_root(const char *path)
{
	struct statx stx;

	if (statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, &stx) < 0)
		return -1;
	if (!(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
		return 1; /* the kernel cannot tell (< 5.8): trust the caller */
	return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "fstype", required_argument, NULL, 't' },
		{ "source", required_argument, NULL, 'S' },
		{ "options", required_argument, NULL, 'o' },
		{ "no-mount", no_argument, NULL, 'n' },
		{ "unregister", required_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *socket_path = NULL, *fstype = NULL, *source = NULL, *options = NULL;
	const char *unregister_id = NULL;
	int timeout_ms = UB_DEFAULT_TIMEOUT_MS, no_mount = 0, opt, status = EXIT_BROKER;
	char target[PATH_MAX], *data = NULL, *id = NULL;
	struct ub_conn *conn = NULL;
	struct ub_error err;
	unsigned long flags = 0;
	sigset_t block, saved;

	while ((opt = getopt_long(argc, argv, "s:T:t:S:o:nu:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': socket_path = optarg; break;
		case 't': fstype = optarg; break;
		case 'S': source = optarg; break;
		case 'o': options = optarg; break;
		case 'n': no_mount = 1; break;
		case 'u': unregister_id = optarg; break;
		case 'T': {
			char *end;
			long v;

			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || v <= 0 || v > INT_MAX) {
				fprintf(stderr, "%s: bad --timeout: %s\n", prog, optarg);
				return EXIT_USAGE;
			}
			timeout_ms = (int)v;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}

	if (unregister_id) {
		if (optind != argc || fstype || source || options || no_mount) {
			fprintf(stderr, "%s: --unregister takes only --socket and --timeout\n", prog);
			return EXIT_USAGE;
		}
		if (ub_connect(socket_path, timeout_ms, &conn) < 0) {
			ub_connect_error(&err, socket_path, errno);
			broker_error(&err);
			return EXIT_BROKER;
		}
		if (ub_unregister(conn, unregister_id, &err) < 0) {
			broker_error(&err);
			ub_close(conn);
			return EXIT_BROKER;
		}
		ub_close(conn);
		return 0;
	}

	if (optind != argc - 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (no_mount && options) {
		fprintf(stderr, "%s: --options makes no sense with --no-mount\n", prog);
		return EXIT_USAGE;
	}
	if (!realpath(argv[optind], target)) {
		fprintf(stderr, "%s: %s: %s\n", prog, argv[optind], strerror(errno));
		return EXIT_MOUNT;
	}
	if (no_mount) {
		int r = is_mount_root(target);

		if (r <= 0) {
			fprintf(stderr, "%s: %s: %s\n", prog, target, r < 0 ? strerror(errno) : "not a mount point");
			return EXIT_MOUNT;
		}
	} else {
		if (!fstype)
			fstype = "tmpfs";
		if (!source)
			source = fstype;
		if (!options && strcmp(fstype, "tmpfs") == 0)
			options = "size=1m";
		if (options) {
			data = malloc(strlen(options) + 1);
			if (!data) {
				perror(prog);
				return EXIT_MOUNT;
			}
			parse_options(options, &flags, data);
		}
	}

	/* The broker takes UTF-8 only: refuse other strings before mounting. */
	{
		const char *const names[] = { "mountpoint", "fstype", "source" };
		const char *const vals[] = { target, fstype, source };

		for (int i = 0; i < 3; i++) {
			char *q = vals[i] ? ub_json_quote(vals[i]) : NULL;

			if (vals[i] && !q) {
				if (errno != EILSEQ) {
					perror(prog);
					free(data);
					return EXIT_MOUNT;
				}
				fprintf(stderr, "%s: E_BAD_REQUEST: %s is not valid UTF-8\n", prog, names[i]);
				free(data);
				return EXIT_USAGE;
			}
			free(q);
		}
	}

	/* Reach the broker before mounting: if it is not there, touch nothing. */
	if (ub_connect(socket_path, timeout_ms, &conn) < 0) {
		ub_connect_error(&err, socket_path, errno);
		broker_error(&err);
		free(data);
		return EXIT_BROKER;
	}

	/* From the mount until registration or rollback, a Ctrl-C must not
	 * leave a mount behind: hold the usual termination signals.  Every
	 * step below is bounded by the timeout. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGQUIT);
	sigprocmask(SIG_BLOCK, &block, &saved);

	if (!no_mount && mount(source, target, fstype, flags, data && data[0] ? data : NULL) < 0) {
		fprintf(stderr, "%s: mount %s on %s (type %s%s%s): %s\n", prog, source, target, fstype,
			options ? ", options " : "", options ? options : "", strerror(errno));
		status = EXIT_MOUNT;
		goto out;
	}

	if (ub_register(conn, target, fstype, source, &id, &err) < 0) {
		broker_error(&err);
		if (!no_mount)
			undo_mount(target);
		status = EXIT_BROKER;
		goto out;
	}

	if (printf("%s\n", id) < 0 || fflush(stdout) != 0) {
		/* nobody learns the id: take it all back */
		fprintf(stderr, "%s: cannot write the registration id: %s\n", prog, strerror(errno));
		if (ub_unregister(conn, id, &err) < 0)
			broker_error(&err);
		else if (!no_mount)
			undo_mount(target);
		status = EXIT_BROKER;
		goto out;
	}
	status = 0;
out:
	sigprocmask(SIG_SETMASK, &saved, NULL);
	free(id);
	free(data);
	ub_close(conn);
	return status;
}
