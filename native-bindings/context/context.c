/*
 * context.c: the container init's execution context, read from the host's
 * view and given to the calling process.  See context.h for the call order
 * and native-bindings/README.md for what each part does and why it sits at
 * its step.  Single-threaded callers only (setns of a user or mount
 * namespace, and several prctl()s, refuse or misbehave otherwise).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "context/context.h"
#include "ub-kernel.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_PROC_FILE (1u << 20)
#define PTRACE_WAIT_MS 2000
#define CAP_SYS_ADMIN_BIT 21
#define IOPRIO_WHO_PROCESS 1

/* struct pidfd_info, v0 layout (64 bytes): include/uapi/linux/pidfd.h */
struct pidfd_info_v0 {
	uint64_t mask, cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	int32_t exit_code;
};
_Static_assert(sizeof(struct pidfd_info_v0) == 64, "pidfd_info v0 is 64 bytes");

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

static const char *const field_names[UB_F_COUNT] = {
	[UB_F_NAMESPACES] = "namespaces", [UB_F_ROOT] = "root", [UB_F_CREDS] = "creds",
	[UB_F_CAPS] = "caps", [UB_F_SECUREBITS] = "securebits", [UB_F_NNP] = "no_new_privs",
	[UB_F_SECCOMP] = "seccomp", [UB_F_LSM] = "lsm", [UB_F_CGROUP] = "cgroup",
	[UB_F_RLIMITS] = "rlimits", [UB_F_OOM] = "oom_score_adj", [UB_F_UMASK] = "umask",
	[UB_F_PERSONALITY] = "personality", [UB_F_SCHED] = "sched", [UB_F_CWD] = "cwd",
	[UB_F_KEYRING] = "keyring", [UB_F_DUMPABLE] = "dumpable",
};

static const char *const rlimit_names[RLIM_NLIMITS] = {
	"CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE",
	"MEMLOCK", "AS", "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME",
};

/* ------------------------------------------------------------------------
 * errors and fields
 */

static int fail(struct ub_ctx_error *e, const char *code, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(struct ub_ctx_error *e, const char *code, int err, const char *fmt, ...)
{
	va_list ap;

	e->code = code;
	e->err = err;
	va_start(ap, fmt);
	vsnprintf(e->step, sizeof(e->step), fmt, ap);
	va_end(ap);
	errno = err;
	return -1;
}

int ub_ctx_target_exited(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	return pidfd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP));
}

/* A failing call on the target: gone (ESRCH, or the pidfd polls readable) is
 * E_INIT_EXITED whatever the step. */
#define fail_target(c, e, code, err, ...) \
	fail((e), ((err) == ESRCH || ub_ctx_target_exited((c)->pidfd)) ? "E_INIT_EXITED" : (code), (err), __VA_ARGS__)

static int check_alive(struct ub_context *c, struct ub_ctx_error *e, const char *after)
{
	if (ub_ctx_target_exited(c->pidfd))
		return fail(e, "E_INIT_EXITED", ESRCH, "init exited (after %s)", after);
	return 0;
}

static void field(struct ub_context *c, enum ub_ctx_field f, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void field(struct ub_context *c, enum ub_ctx_field f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->fields[f], UB_CTX_FIELD_LEN, fmt, ap);
	va_end(ap);
}

/* Add one reason to a field, as "degraded: a; b". */
static void degrade(struct ub_context *c, enum ub_ctx_field f, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void degrade(struct ub_context *c, enum ub_ctx_field f, const char *fmt, ...)
{
	char *v = c->fields[f];
	size_t n;
	va_list ap;

	if (strncmp(v, "degraded: ", 10) == 0) {
		n = strlen(v);
		if (n + 2 < UB_CTX_FIELD_LEN)
			n += snprintf(v + n, UB_CTX_FIELD_LEN - n, "; ");
	} else {
		n = snprintf(v, UB_CTX_FIELD_LEN, "degraded: ");
	}
	va_start(ap, fmt);
	if (n < UB_CTX_FIELD_LEN)
		vsnprintf(v + n, UB_CTX_FIELD_LEN - n, fmt, ap);
	va_end(ap);
}

const char *ub_ctx_field_name(enum ub_ctx_field f)
{
	return f < UB_F_COUNT ? field_names[f] : "?";
}

void ub_ctx_fields_json(const struct ub_context *c, char *buf, size_t cap)
{
	size_t n = 0;
	int f;

	n += snprintf(buf + n, cap - n, "{");
	for (f = 0; f < UB_F_COUNT && n + 8 < cap; f++) {
		const unsigned char *s = (const unsigned char *)c->fields[f];

		n += snprintf(buf + n, cap - n, "%s\"%s\":\"", f ? "," : "", field_names[f]);
		for (; *s && n + 8 < cap; s++) {
			if (*s == '"' || *s == '\\')
				n += snprintf(buf + n, cap - n, "\\%c", *s);
			else if (*s < 0x20 || *s >= 0x7f) /* ASCII only: no UTF-8 to validate */
				n += snprintf(buf + n, cap - n, "?");
			else
				buf[n++] = (char)*s;
		}
		n += snprintf(buf + n, cap - n, "\"");
	}
	if (n + 2 <= cap)
		snprintf(buf + n, cap - n, "}");
}

/* ------------------------------------------------------------------------
 * reading /proc
 */

/* The whole of dirfd/name (at most MAX_PROC_FILE bytes), NUL-terminated. */
static int read_at(int dirfd, const char *name, char **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (!buf || fd < 0) {
		int err = fd < 0 ? errno : ENOMEM;
		free(buf);
		if (fd >= 0)
			close(fd);
		errno = err;
		return -1;
	}
	for (;;) {
		ssize_t r;

		if (n + 1 >= cap) {
			char *more = cap * 2 <= MAX_PROC_FILE ? realloc(buf, cap * 2) : NULL;
			if (!more) {
				free(buf);
				close(fd);
				errno = EFBIG;
				return -1;
			}
			buf = more;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int err = errno;
			free(buf);
			close(fd);
			errno = err;
			return -1;
		}
		if (r == 0)
			break;
		n += r;
	}
	close(fd);
	buf[n] = '\0';
	*out = buf;
	if (len)
		*len = n;
	return 0;
}

/* A file of /proc/<init>/, then the check that init is still alive: the fd of
 * /proc/<pid> is bound to the process, and alive-after-read means the pid was
 * not reused before we opened it. */
static int proc_read(struct ub_context *c, const char *name, char **out, struct ub_ctx_error *e)
{
	if (read_at(c->procfd, name, out, NULL) < 0)
		return fail_target(c, e, "E_PROC", errno, "read /proc/%d/%s", c->pid, name);
	if (ub_ctx_target_exited(c->pidfd)) {
		free(*out);
		*out = NULL;
		return fail(e, "E_INIT_EXITED", ESRCH, "init exited (after reading %s)", name);
	}
	return 0;
}

/* The value of "Key:" in a /proc status text, or NULL. */
static const char *status_value(const char *text, const char *key)
{
	size_t klen = strlen(key);
	const char *p = text;

	while (p && *p) {
		if (strncmp(p, key, klen) == 0 && p[klen] == ':') {
			p += klen + 1;
			while (*p == ' ' || *p == '\t')
				p++;
			return p;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

static int parse_ull(const char *s, int base, unsigned long long *out, const char **end)
{
	char *e;

	errno = 0;
	*out = strtoull(s, &e, base);
	if (errno || e == s)
		return -1;
	if (end)
		*end = e;
	return 0;
}

/* Field 22 (starttime) of a stat line; comm (field 2) may hold spaces and ')'. */
static int stat_start_time(const char *stat, unsigned long long *out)
{
	const char *p = strrchr(stat, ')');
	int field = 2;

	if (!p)
		return -1;
	for (p++; *p && field < 22; p++)
		if (*p == ' ')
			field++;
	return field == 22 ? parse_ull(p, 10, out, NULL) : -1;
}

int ub_proc_start_time(const char *stat, unsigned long long *out)
{
	return stat_start_time(stat, out);
}

/* ------------------------------------------------------------------------
 * kernel features newer than Linux 6.1, and their fallbacks
 */

static int compat_have[UB_COMPAT_COUNT] = { -1, -1 };  /* -1: not probed yet */
static int compat_forced[UB_COMPAT_COUNT];
static const char *const compat_words[UB_COMPAT_COUNT] = { "no-pidfd-ns", "no-pidfd-info" };

static int has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	const char *p = list;

	for (;;) {
		if (strncmp(p, word, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return 1;
		p = strchr(p, ',');
		if (!p)
			return 0;
		p++;
	}
}

static void compat_read_env(void)
{
	static int done;
	const char *v;
	int f;

	if (done)
		return;
	done = 1;
	v = getenv("UB_KERNEL_COMPAT");
	if (!v)
		return;
	for (f = 0; f < UB_COMPAT_COUNT; f++)
		compat_forced[f] = has_word(v, "all") || has_word(v, compat_words[f]);
	unsetenv("UB_KERNEL_COMPAT");
}

/* One ioctl on a pidfd of our own: an unknown request fails with ENOTTY (the
 * pidfd's file has no ioctl before 6.11) or EINVAL. */
static int compat_probe(enum ub_compat_feature f)
{
	struct pidfd_info_v0 info = { .mask = UB_PIDFD_INFO_PID };
	int self = (int)syscall(UB_NR_pidfd_open, getpid(), 0), r, err;

	if (self < 0)
		return 1; /* cannot tell: the real call will say */
	r = f == UB_COMPAT_PIDFD_NS ? ioctl(self, UB_PIDFD_GET_PID_NAMESPACE, 0) : ioctl(self, UB_PIDFD_GET_INFO, &info);
	err = errno;
	if (f == UB_COMPAT_PIDFD_NS && r >= 0)
		close(r);
	close(self);
	return r >= 0 || (err != ENOTTY && err != EINVAL);
}

int ub_compat_has(enum ub_compat_feature f)
{
	compat_read_env();
	if (compat_forced[f])
		return 0;
	if (compat_have[f] < 0)
		compat_have[f] = compat_probe(f);
	return compat_have[f];
}

void ub_compat_init(void)
{
	int f;

	for (f = 0; f < UB_COMPAT_COUNT; f++)
		ub_compat_has(f);
}

/* The numbers of one "Key:" line ("Pid:\t12", "NSpid:\t12\t1") of a /proc text. */
static size_t status_numbers(const char *text, const char *key, long *out, size_t max)
{
	const char *p = status_value(text, key);
	size_t n = 0;

	while (p && n < max) {
		char *end;
		long v = strtol(p, &end, 10);

		if (end == p)
			break;
		out[n++] = v;
		p = end;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\n' || *p == '\0')
			break;
	}
	return n;
}

/* "Key:" numbers of our fdinfo for pidfd, read in procdir (-1: /proc). */
static size_t fdinfo_numbers(int procdir, int pidfd, const char *key, long *out, size_t max)
{
	char name[64], *text;
	size_t n;

	snprintf(name, sizeof(name), procdir >= 0 ? "self/fdinfo/%d" : "/proc/self/fdinfo/%d", pidfd);
	if (read_at(procdir >= 0 ? procdir : AT_FDCWD, name, &text, NULL) < 0)
		return 0;
	n = status_numbers(text, key, out, max);
	free(text);
	if (n == 0)
		errno = ENOTTY; /* no such line: not a pidfd */
	return n;
}

pid_t ub_pidfd_pid(int pidfd)
{
	struct pidfd_info_v0 info = { .mask = UB_PIDFD_INFO_PID };
	long pid;

	if (ub_compat_has(UB_COMPAT_PIDFD_INFO))
		return ioctl(pidfd, UB_PIDFD_GET_INFO, &info) == 0 ? (pid_t)info.pid : -1;
	/* pidfd_show_fdinfo(): -1 once the process is reaped (a zombie keeps its pid) */
	if (fdinfo_numbers(-1, pidfd, "Pid", &pid, 1) != 1)
		return -1;
	if (pid <= 0) {
		errno = ESRCH;
		return -1;
	}
	return (pid_t)pid;
}

pid_t ub_pidfd_vpid(int procdir, int pidfd)
{
	struct pidfd_info_v0 info = { .mask = UB_PIDFD_INFO_PID };
	long theirs[32], ours[32];
	size_t nt, no;
	char *text;

	if (ub_compat_has(UB_COMPAT_PIDFD_INFO))
		return ioctl(pidfd, UB_PIDFD_GET_INFO, &info) == 0 ? (pid_t)info.pid : -1;
	/* Both NSpid lists start at the pid namespace of that /proc: ours has one
	 * entry per level down to our active pid namespace, so the target's entry
	 * at our last index is its number there (the target is at our level or
	 * below: A outside, B and T inside the container's pid namespace). */
	nt = fdinfo_numbers(procdir, pidfd, "NSpid", theirs, 32);
	if (nt == 0 || theirs[0] <= 0) {
		errno = nt ? ESRCH : errno;
		return -1;
	}
	if (read_at(procdir >= 0 ? procdir : AT_FDCWD, procdir >= 0 ? "self/status" : "/proc/self/status", &text, NULL) < 0)
		return -1;
	no = status_numbers(text, "NSpid", ours, 32);
	free(text);
	if (no == 0 || no > nt) {
		errno = ESRCH; /* not in our pid namespace or below it */
		return -1;
	}
	return (pid_t)theirs[no - 1];
}

/* The parent of pidfd's process, pid being its number in /proc: PIDFD_GET_INFO
 * (6.13), else field 4 of /proc/<pid>/stat, which counts only if the pidfd
 * still polls "alive" after the read (the number was its all along).  -1 with
 * errno (ESRCH: exited). */
static pid_t pidfd_ppid(int pidfd, pid_t pid)
{
	struct pidfd_info_v0 info = { .mask = UB_PIDFD_INFO_PID };
	char path[64], *text;
	const char *p;
	int ppid = -1;

	if (ub_compat_has(UB_COMPAT_PIDFD_INFO))
		return ioctl(pidfd, UB_PIDFD_GET_INFO, &info) == 0 ? (pid_t)info.ppid : -1;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_at(AT_FDCWD, path, &text, NULL) < 0)
		return -1;
	p = strrchr(text, ')');
	if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1)
		ppid = -1;
	free(text);
	if (ub_ctx_target_exited(pidfd)) {
		errno = ESRCH;
		return -1;
	}
	if (ppid < 0)
		errno = EINVAL;
	return (pid_t)ppid;
}

int ub_pidfd_open_child(pid_t child, pid_t parent, int parent_pidfd)
{
	int fd, err;
	pid_t ppid;

	if (child <= 0 || parent <= 0 || parent_pidfd < 0) {
		errno = EINVAL;
		return -1;
	}
	fd = (int)syscall(UB_NR_pidfd_open, child, 0);
	if (fd < 0)
		return -1;
	/* its parent then was the number `parent`, and that number was still the
	 * process behind parent_pidfd afterwards: a child of it, whatever the
	 * numbers did before the open */
	ppid = pidfd_ppid(fd, child);
	err = ppid < 0 ? errno : ESRCH;
	if (ppid != parent || ub_ctx_target_exited(parent_pidfd)) {
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

static const char *ns_file_of(unsigned long req)
{
	switch (req) {
	case UB_PIDFD_GET_USER_NAMESPACE: return "user";
	case UB_PIDFD_GET_MNT_NAMESPACE: return "mnt";
	case UB_PIDFD_GET_PID_NAMESPACE: return "pid";
	case UB_PIDFD_GET_PID_FOR_CHILDREN_NAMESPACE: return "pid_for_children";
	case UB_PIDFD_GET_NET_NAMESPACE: return "net";
	case UB_PIDFD_GET_UTS_NAMESPACE: return "uts";
	case UB_PIDFD_GET_IPC_NAMESPACE: return "ipc";
	case UB_PIDFD_GET_CGROUP_NAMESPACE: return "cgroup";
	case UB_PIDFD_GET_TIME_NAMESPACE: return "time";
	case UB_PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE: return "time_for_children";
	default: return NULL;
	}
}

int ub_pidfd_ns_open(int pidfd, unsigned long req)
{
	const char *name = ns_file_of(req);
	char path[64];
	pid_t pid;
	int fd;

	if (ub_compat_has(UB_COMPAT_PIDFD_NS))
		return ioctl(pidfd, req, 0);
	if (!name) {
		errno = EINVAL;
		return -1;
	}
	pid = ub_pidfd_pid(pidfd);
	if (pid < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	/* Opened by pid: it was this process's only if the process is still alive
	 * now (a live process keeps its pid, and a pidfd's process never returns). */
	if (ub_ctx_target_exited(pidfd)) {
		if (fd >= 0)
			close(fd);
		errno = ESRCH;
		return -1;
	}
	if (fd < 0 && errno == ENOENT)
		errno = EOPNOTSUPP; /* alive, no such file: the kernel lacks the type */
	return fd;
}

/* ------------------------------------------------------------------------
 * opening the target
 */

void ub_ctx_init(struct ub_context *c)
{
	int f;

	memset(c, 0, sizeof(*c));
	c->pidfd = c->procfd = c->rootfd = c->cwdfd = c->lsm_fd = -1;
	c->last_cap = CAP_LAST_CAP;
	ub_compat_init();
	for (f = 0; f < UB_F_COUNT; f++)
		field(c, f, "ok");
	field(c, UB_F_SECUREBITS, "not copied: another process's securebits cannot be read; defaults kept");
	field(c, UB_F_KEYRING, "fresh session keyring");
	field(c, UB_F_DUMPABLE, "0 until exec");
}

void ub_ctx_release(struct ub_context *c)
{
	size_t i;

	if (c->own_pidfd && c->pidfd >= 0)
		close(c->pidfd);
	if (c->procfd >= 0)
		close(c->procfd);
	if (c->rootfd >= 0)
		close(c->rootfd);
	if (c->cwdfd >= 0)
		close(c->cwdfd);
	if (c->lsm_fd >= 0)
		close(c->lsm_fd);
	free(c->groups);
	for (i = 0; i < c->nfilters; i++)
		free(c->filters[i].insns);
	for (i = 0; i < c->ncgroups; i++)
		free(c->cgroup_procs[i]);
	c->pidfd = c->procfd = c->rootfd = c->cwdfd = c->lsm_fd = -1;
	c->groups = NULL;
	c->nfilters = c->ncgroups = 0;
}

static int open_pidfd(struct ub_context *c, const struct ub_ctx_target *t, struct ub_ctx_error *e)
{
	if (t->pidfd >= 0) {
		pid_t pid = ub_pidfd_pid(t->pidfd);

		if (pid < 0)
			return fail(e, errno == ESRCH ? "E_INIT_EXITED" : "E_NOT_PIDFD", errno, "%s",
				    ub_compat_has(UB_COMPAT_PIDFD_INFO) ? "ioctl(PIDFD_GET_INFO)" : "Pid: of /proc/self/fdinfo/<pidfd>");
		c->pidfd = t->pidfd;
		c->pid = pid;
		return 0;
	}
	if (t->pid <= 0)
		return fail(e, "E_BAD_REQUEST", EINVAL, "usage: no target pid");
	c->pidfd = (int)syscall(UB_NR_pidfd_open, t->pid, 0);
	if (c->pidfd < 0)
		return fail(e, errno == ESRCH ? "E_INIT_EXITED" : "E_NOT_PIDFD", errno, "pidfd_open(%d)", (int)t->pid);
	c->own_pidfd = 1;
	c->pid = t->pid;
	return 0;
}

static int check_pidns(struct ub_context *c, unsigned long long want, struct ub_ctx_error *e)
{
	struct stat st;
	int fd;

	if (c->host) {
		/* pid 1 of the host may refuse PIDFD_GET_*_NAMESPACE (EACCES); a host
		 * request names our own pid namespace. */
		if (stat("/proc/self/ns/pid", &st) < 0)
			return fail(e, "E_NS_OPEN", errno, "stat /proc/self/ns/pid");
		if (st.st_ino != want)
			return fail(e, "E_BAD_REQUEST", EINVAL, "host request: pid namespace %llu is not ours (%llu)",
				    want, (unsigned long long)st.st_ino);
		return 0;
	}
	fd = ub_pidfd_ns_open(c->pidfd, UB_PIDFD_GET_PID_NAMESPACE);
	if (fd < 0)
		return fail_target(c, e, "E_NS_OPEN", errno, "open pid namespace of pid %d", (int)c->pid);
	if (fstat(fd, &st) < 0) {
		close(fd);
		return fail(e, "E_NS_OPEN", errno, "fstat pid namespace");
	}
	close(fd);
	if (st.st_ino != want)
		return fail(e, "E_INIT_EXITED", ESRCH, "pid %d is in pid namespace %llu, not %llu: the init exited and its pid was reused",
			    (int)c->pid, (unsigned long long)st.st_ino, want);
	return check_alive(c, e, "PIDFD_GET_PID_NAMESPACE");
}

int ub_ctx_open(struct ub_context *c, const struct ub_ctx_target *t, struct ub_ctx_error *e)
{
	char path[64], *stat;
	unsigned long long start;

	c->host = t->host;
	if (open_pidfd(c, t, e) < 0)
		return -1;
	if (check_alive(c, e, "pidfd_open") < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d", (int)c->pid);
	c->procfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (c->procfd < 0)
		return fail_target(c, e, errno == ENOENT ? "E_INIT_EXITED" : "E_PROC", errno, "open %s", path);
	if (check_alive(c, e, "open /proc/<pid>") < 0)
		return -1;
	if (t->start_time) {
		if (proc_read(c, "stat", &stat, e) < 0)
			return -1;
		if (stat_start_time(stat, &start) < 0) {
			free(stat);
			return fail(e, "E_PROC", EINVAL, "parse /proc/%d/stat", (int)c->pid);
		}
		free(stat);
		if (start != t->start_time)
			return fail(e, "E_INIT_EXITED", ESRCH, "pid %d started at %llu, not %llu: the init exited and its pid was reused",
				    (int)c->pid, start, t->start_time);
	}
	if (t->pidns_ino && check_pidns(c, t->pidns_ino, e) < 0)
		return -1;
	return 0;
}

/* ------------------------------------------------------------------------
 * capture: credentials and capabilities
 */

/* An id the host sees, as the id inside the user namespace whose map this is
 * (lines "inside outside count", outside in the reader's namespace). */
static int map_id(const char *map, unsigned long long host_id, unsigned int *out)
{
	const char *p = map;

	while (*p) {
		unsigned long long in, outside, count;
		const char *q;

		if (parse_ull(p, 10, &in, &q) == 0 && parse_ull(q, 10, &outside, &q) == 0 &&
		    parse_ull(q, 10, &count, &q) == 0 && host_id >= outside && host_id - outside < count) {
			*out = (unsigned int)(in + (host_id - outside));
			return 0;
		}
		p = strchr(p, '\n');
		if (!p)
			break;
		p++;
	}
	return -1;
}

static int parse_ids(const char *val, const char *map, unsigned int out[4], const char *what,
		     struct ub_ctx_error *e)
{
	int i;

	for (i = 0; i < 4; i++) {
		unsigned long long id;

		if (!val || parse_ull(val, 10, &id, &val) < 0)
			return fail(e, "E_PROC", EINVAL, "parse %s of init's status", what);
		if (map_id(map, id, &out[i]) < 0)
			return fail(e, "E_CREDS", EOVERFLOW, "%s %llu of init is not mapped in its user namespace", what, id);
	}
	return 0;
}

static int parse_groups(struct ub_context *c, const char *val, const char *gid_map, struct ub_ctx_error *e)
{
	size_t n = 0, cap = 0;
	const char *p = val;

	while (p && *p && *p != '\n') {
		unsigned long long id;
		unsigned int in;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\n' || !*p)
			break;
		if (parse_ull(p, 10, &id, &p) < 0)
			return fail(e, "E_PROC", EINVAL, "parse Groups of init's status");
		if (map_id(gid_map, id, &in) < 0)
			return fail(e, "E_CREDS", EOVERFLOW, "group %llu of init is not mapped in its user namespace", id);
		if (n == cap) {
			gid_t *more = realloc(c->groups, (cap ? cap * 2 : 16) * sizeof(gid_t));
			if (!more)
				return fail(e, "E_PROC", ENOMEM, "groups");
			c->groups = more;
			cap = cap ? cap * 2 : 16;
		}
		c->groups[n++] = in;
	}
	c->ngroups = n;
	return 0;
}

static int parse_cap(const char *status, const char *key, uint64_t *out, struct ub_ctx_error *e)
{
	const char *v = status_value(status, key);
	unsigned long long x;

	if (!v || parse_ull(v, 16, &x, NULL) < 0)
		return fail(e, "E_PROC", EINVAL, "parse %s of init's status", key);
	*out = x;
	return 0;
}

static int parse_int(const char *status, const char *key, int base, long *out)
{
	const char *v = status_value(status, key);
	char *end;

	if (!v)
		return -1;
	errno = 0;
	*out = strtol(v, &end, base);
	return errno || end == v ? -1 : 0;
}

static int capture_creds(struct ub_context *c, struct ub_ctx_error *e)
{
	char *status = NULL, *uid_map = NULL, *gid_map = NULL, *sg = NULL;
	long v;
	int rc = -1;

	if (proc_read(c, "status", &status, e) < 0 || proc_read(c, "uid_map", &uid_map, e) < 0 ||
	    proc_read(c, "gid_map", &gid_map, e) < 0)
		goto out;
	if (parse_ids(status_value(status, "Uid"), uid_map, c->uid, "uid", e) < 0 ||
	    parse_ids(status_value(status, "Gid"), gid_map, c->gid, "gid", e) < 0 ||
	    parse_groups(c, status_value(status, "Groups"), gid_map, e) < 0)
		goto out;
	if (parse_cap(status, "CapInh", &c->cap_inh, e) < 0 || parse_cap(status, "CapPrm", &c->cap_prm, e) < 0 ||
	    parse_cap(status, "CapEff", &c->cap_eff, e) < 0 || parse_cap(status, "CapBnd", &c->cap_bnd, e) < 0 ||
	    parse_cap(status, "CapAmb", &c->cap_amb, e) < 0)
		goto out;
	if (parse_int(status, "NoNewPrivs", 10, &v) < 0) {
		fail(e, "E_PROC", EINVAL, "parse NoNewPrivs of init's status");
		goto out;
	}
	c->nnp = v != 0;
	c->seccomp_mode = parse_int(status, "Seccomp", 10, &v) == 0 ? (int)v : 0;
	if (c->seccomp_mode == 1) {
		fail(e, "E_SECCOMP", EPERM, "init runs in seccomp strict mode: no process of its context can exec");
		goto out;
	}
	if (parse_int(status, "Umask", 8, &v) < 0) {
		fail(e, "E_PROC", EINVAL, "parse Umask of init's status");
		goto out;
	}
	c->umask = (mode_t)v & 0777;
	/* setgroups(2) is refused in a user namespace whose setgroups file says deny */
	if (proc_read(c, "setgroups", &sg, e) < 0)
		goto out;
	c->setgroups_denied = strncmp(sg, "deny", 4) == 0;
	/* PR_SET_THP_DISABLE is inherited across fork and exec */
	c->thp_disabled = parse_int(status, "THP_enabled", 10, &v) == 0 && v == 0;
	field(c, UB_F_NNP, "%s", c->nnp ? "1" : "0");
	field(c, UB_F_UMASK, "%04o", (unsigned int)c->umask);
	rc = 0;
out:
	free(status);
	free(uid_map);
	free(gid_map);
	free(sg);
	return rc;
}

/* ------------------------------------------------------------------------
 * capture: rlimits, oom_score_adj, personality
 */

/* /proc/<pid>/limits: one line per RLIMIT_* in index order, "%-25s%-20s%-20s". */
static int parse_limits_file(struct ub_context *c, const char *text, struct ub_ctx_error *e)
{
	const char *line = strchr(text, '\n'); /* skip the header */
	int r;

	for (r = 0; r < RLIM_NLIMITS; r++) {
		rlim_t v[2];
		int i;

		if (!line || strlen(++line) < 46)
			return fail(e, "E_PROC", EINVAL, "parse /proc/%d/limits", (int)c->pid);
		for (i = 0; i < 2; i++) {
			const char *s = line + 25 + 20 * i;
			unsigned long long x;

			if (strncmp(s, "unlimited", 9) == 0)
				v[i] = RLIM_INFINITY;
			else if (parse_ull(s, 10, &x, NULL) == 0)
				v[i] = x;
			else
				return fail(e, "E_PROC", EINVAL, "parse /proc/%d/limits", (int)c->pid);
		}
		c->rlim[r].rlim_cur = v[0];
		c->rlim[r].rlim_max = v[1];
		line = strchr(line, '\n');
	}
	return 0;
}

static int capture_limits(struct ub_context *c, struct ub_ctx_error *e)
{
	char *text = NULL;
	long v;
	int r;

	/* prlimit() on another process needs matching uids or CAP_SYS_RESOURCE;
	 * /proc/<pid>/limits is world-readable and says the same. */
	for (r = 0; r < RLIM_NLIMITS; r++)
		if (prlimit(c->pid, r, NULL, &c->rlim[r]) < 0)
			break;
	if (r < RLIM_NLIMITS) {
		if (errno != EPERM)
			return fail_target(c, e, "E_RLIMIT", errno, "prlimit(%d, %s)", (int)c->pid, rlimit_names[r]);
		if (proc_read(c, "limits", &text, e) < 0)
			return -1;
		r = parse_limits_file(c, text, e);
		free(text);
		if (r < 0)
			return -1;
	}
	if (check_alive(c, e, "prlimit") < 0)
		return -1;

	if (proc_read(c, "oom_score_adj", &text, e) < 0)
		return -1;
	v = strtol(text, NULL, 10);
	c->oom_score_adj = (int)v;
	free(text);

	/* mode 0400, ptrace-read access: fine for host root */
	if (proc_read(c, "personality", &text, e) < 0)
		return -1;
	c->persona = strtoul(text, NULL, 16);
	free(text);
	return 0;
}

/* Scheduling a forked child inherits: nice, policy, I/O priority, CPU
 * affinity, timer slack.  Read by pid, so checked alive afterwards. */
static int capture_sched(struct ub_context *c, struct ub_ctx_error *e)
{
	struct sched_param sp;
	cpu_set_t set;
	char *text = NULL;

	errno = 0;
	c->nice = getpriority(PRIO_PROCESS, (id_t)c->pid);
	if (c->nice == -1 && errno)
		return fail_target(c, e, "E_PROC", errno, "getpriority(%d)", (int)c->pid);
	c->policy = sched_getscheduler(c->pid);
	if (c->policy < 0 || sched_getparam(c->pid, &sp) < 0)
		return fail_target(c, e, "E_PROC", errno, "sched_getscheduler(%d)", (int)c->pid);
	c->sched_priority = sp.sched_priority;
	c->ioprio = (int)syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, c->pid);
	if (c->ioprio < 0)
		return fail_target(c, e, "E_PROC", errno, "ioprio_get(%d)", (int)c->pid);
	CPU_ZERO(&set);
	if (sched_getaffinity(c->pid, sizeof(set), &set) < 0)
		return fail_target(c, e, "E_PROC", errno, "sched_getaffinity(%d)", (int)c->pid);
	memcpy(c->affinity, &set, sizeof(c->affinity) < sizeof(set) ? sizeof(c->affinity) : sizeof(set));
	c->affinity_len = sizeof(c->affinity) < sizeof(set) ? sizeof(c->affinity) : sizeof(set);
	if (read_at(c->procfd, "timerslack_ns", &text, NULL) == 0) {
		c->timerslack_ns = strtoul(text, NULL, 10);
		free(text);
	}
	if (check_alive(c, e, "scheduling") < 0)
		return -1;
	/* what fork gives the child of a SCHED_RESET_ON_FORK parent (sched(7)) */
	if (c->policy & SCHED_RESET_ON_FORK) {
		c->policy &= ~SCHED_RESET_ON_FORK;
		if (c->policy != SCHED_OTHER && c->policy != SCHED_BATCH && c->policy != SCHED_IDLE) {
			c->policy = SCHED_OTHER;
			c->sched_priority = 0;
		}
		if (c->nice < 0)
			c->nice = 0;
	}
	if (c->policy != SCHED_OTHER && c->policy != SCHED_BATCH && c->policy != SCHED_IDLE &&
	    c->policy != SCHED_FIFO && c->policy != SCHED_RR)
		return fail(e, "E_SPAWN", EINVAL, "init's scheduling policy %d cannot be given to a child", c->policy);
	return 0;
}

/* ------------------------------------------------------------------------
 * capture: cgroups
 */

/* mountinfo escapes space, tab, newline and backslash as \ooo; in place. */
static void unescape_octal(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* Every comma-separated token of need is one of have's ("rw,cpu,cpuacct"). */
static int has_all_tokens(const char *have, const char *need)
{
	char tok[128];
	const char *p = need;

	while (*p) {
		size_t n = strcspn(p, ",");
		const char *h = have;
		int found = 0;

		if (n == 0 || n >= sizeof(tok))
			return 0;
		memcpy(tok, p, n);
		tok[n] = '\0';
		while (*h && !found) {
			size_t m = strcspn(h, ",");
			found = m == n && strncmp(h, tok, n) == 0;
			h += m + (h[m] == ',');
		}
		if (!found)
			return 0;
		p += n + (p[n] == ',');
	}
	return 1;
}

/* Host path of the cgroup.procs of hierarchy ctrls ("" = cgroup2) at path. */
static char *cgroup_procs_path(char *mountinfo, const char *ctrls, const char *path)
{
	char *save = NULL, *line;

	for (line = strtok_r(mountinfo, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char root[PATH_MAX], mnt[PATH_MAX], fstype[64], super[1024], *dash, *out;
		size_t rlen;

		dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) != 2 ||
		    sscanf(dash + 3, "%63s %*s %1023s", fstype, super) != 2)
			continue;
		if (*ctrls ? strcmp(fstype, "cgroup") != 0 || !has_all_tokens(super, ctrls) : strcmp(fstype, "cgroup2") != 0)
			continue;
		unescape_octal(root);
		unescape_octal(mnt);
		rlen = strcmp(root, "/") == 0 ? 0 : strlen(root);
		if (strncmp(path, root, rlen) != 0 || (path[rlen] != '/' && path[rlen] != '\0'))
			continue;
		if (asprintf(&out, "%s%s/cgroup.procs", mnt, path + rlen) < 0)
			return NULL;
		return out;
	}
	return NULL;
}

static int same_line_in(const char *text, const char *line, size_t len)
{
	const char *p = text;

	while (p && *p) {
		if (strncmp(p, line, len) == 0 && (p[len] == '\n' || p[len] == '\0'))
			return 1;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return 0;
}

static int capture_cgroups(struct ub_context *c, struct ub_ctx_error *e)
{
	char *theirs = NULL, *ours = NULL, *mountinfo = NULL, *line, *save = NULL;
	int rc = -1, moved = 0;

	if (proc_read(c, "cgroup", &theirs, e) < 0)
		goto out;
	if (read_at(AT_FDCWD, "/proc/self/cgroup", &ours, NULL) < 0 ||
	    read_at(AT_FDCWD, "/proc/self/mountinfo", &mountinfo, NULL) < 0) {
		fail(e, "E_CGROUP", errno, "read /proc/self/cgroup or mountinfo");
		goto out;
	}
	for (line = strtok_r(theirs, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *ctrls = strchr(line, ':'), *path, *copy;

		if (same_line_in(ours, line, strlen(line)))
			continue; /* already there */
		if (!ctrls || !(path = strchr(ctrls + 1, ':')))
			continue;
		*ctrls++ = '\0';
		*path++ = '\0';
		if (c->ncgroups == UB_CTX_MAX_CGROUPS) {
			fail(e, "E_CGROUP", E2BIG, "init is in too many cgroup hierarchies");
			goto out;
		}
		copy = strdup(mountinfo);
		if (!copy) {
			fail(e, "E_CGROUP", ENOMEM, "cgroups");
			goto out;
		}
		c->cgroup_procs[c->ncgroups] = cgroup_procs_path(copy, ctrls, path);
		free(copy);
		if (c->cgroup_procs[c->ncgroups])
			c->ncgroups++, moved++;
		else
			degrade(c, UB_F_CGROUP, "hierarchy %s (%s) not mounted here", line, *ctrls ? ctrls : "cgroup2");
	}
	if (strncmp(c->fields[UB_F_CGROUP], "degraded", 8) != 0)
		field(c, UB_F_CGROUP, moved ? "ok: joined %d hierarchies" : "ok: already shared", moved);
	rc = 0;
out:
	free(theirs);
	free(ours);
	free(mountinfo);
	return rc;
}

/* ------------------------------------------------------------------------
 * capture: LSM label, root, seccomp filters, namespaces
 */

static void trim_label(char *s)
{
	size_t n = strlen(s);

	while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
}

static int capture_lsm(struct ub_context *c, struct ub_ctx_error *e)
{
	char *label = NULL, *mode;
	int apparmor = 1;

	/* The per-LSM file first (stacking kernels), then the shared one. */
	if (read_at(c->procfd, "attr/apparmor/current", &label, NULL) < 0) {
		apparmor = 0;
		if (read_at(c->procfd, "attr/current", &label, NULL) < 0) {
			if (errno == EINVAL || errno == ENOENT || errno == EOPNOTSUPP) {
				field(c, UB_F_LSM, "none: no LSM provides a label");
				return check_alive(c, e, "attr/current");
			}
			return fail_target(c, e, "E_LSM", errno, "read /proc/%d/attr/current", (int)c->pid);
		}
	}
	if (check_alive(c, e, "attr/current") < 0) {
		free(label);
		return -1;
	}
	trim_label(label);
	/* AppArmor shows "profile (mode)" and takes "exec profile" on attr/exec. */
	mode = strrchr(label, '(');
	if (mode && mode > label && mode[-1] == ' ' && label[strlen(label) - 1] == ')') {
		apparmor = 1;
		mode[-1] = '\0';
	}
	if (!*label || strcmp(label, "unconfined") == 0) {
		field(c, UB_F_LSM, "none: init is unconfined");
		free(label);
		return 0;
	}
	c->lsm_exec_path = apparmor && faccessat(AT_FDCWD, "/proc/thread-self/attr/apparmor/exec", W_OK, 0) == 0
		? "/proc/thread-self/attr/apparmor/exec" : "/proc/thread-self/attr/exec";
	snprintf(c->lsm_value, sizeof(c->lsm_value), "%s%s", apparmor ? "exec " : "", label);
	field(c, UB_F_LSM, "ok: %s", label);
	free(label);
	return 0;
}

static int capture_root(struct ub_context *c, struct ub_ctx_error *e)
{
	/* init's root as the kernel resolves it: the root of its mount namespace,
	 * or wherever it chroot()ed inside it. */
	c->rootfd = openat(c->procfd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (c->rootfd < 0)
		return fail_target(c, e, "E_ROOT", errno, "open /proc/%d/root", (int)c->pid);
	c->cwdfd = openat(c->procfd, "cwd", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (c->cwdfd < 0)
		return fail_target(c, e, "E_ROOT", errno, "open /proc/%d/cwd", (int)c->pid);
	return check_alive(c, e, "open root and cwd");
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* PTRACE_INTERRUPT, then wait (bounded) until the tracee is in a ptrace-stop.
 * A signal-delivery-stop counts too; its signal is handed back at detach. */
static int stop_tracee(struct ub_context *c, int *inject, struct ub_ctx_error *e)
{
	long long deadline = now_ms() + PTRACE_WAIT_MS;

	if (ptrace(PTRACE_INTERRUPT, c->pid, 0, 0) < 0)
		return fail_target(c, e, "E_SECCOMP", errno, "ptrace(PTRACE_INTERRUPT)");
	for (;;) {
		int st;
		pid_t r = waitpid(c->pid, &st, __WALL | WNOHANG);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return fail_target(c, e, "E_SECCOMP", errno, "waitpid(init) after PTRACE_INTERRUPT");
		if (r > 0 && (WIFEXITED(st) || WIFSIGNALED(st)))
			return fail(e, "E_INIT_EXITED", ESRCH, "init exited while its seccomp filters were read");
		if (r > 0 && WIFSTOPPED(st)) {
			if ((st >> 16) != PTRACE_EVENT_STOP)
				*inject = WSTOPSIG(st);
			return 0;
		}
		if (now_ms() > deadline)
			return fail(e, "E_SECCOMP", ETIMEDOUT, "init did not stop for PTRACE_INTERRUPT");
		sleep_ms(1);
	}
}

static int read_filters(struct ub_context *c, struct ub_ctx_error *e)
{
	unsigned long i;

	for (i = 0; i < UB_CTX_MAX_FILTERS; i++) {
		struct __ptrace_seccomp_metadata md = { .filter_off = i };
		struct ub_ctx_filter *f = &c->filters[i];
		long n = ptrace(PTRACE_SECCOMP_GET_FILTER, c->pid, (void *)i, NULL);

		if (n < 0 && errno == ENOENT)
			return 0; /* past the oldest filter */
		if (n <= 0 || n > BPF_MAXINSNS)
			return fail_target(c, e, "E_SECCOMP", n < 0 ? errno : EINVAL, "ptrace(PTRACE_SECCOMP_GET_FILTER, %lu)", i);
		f->insns = calloc((size_t)n, sizeof(struct sock_filter));
		if (!f->insns)
			return fail(e, "E_SECCOMP", ENOMEM, "seccomp filter");
		c->nfilters = i + 1;
		if (ptrace(PTRACE_SECCOMP_GET_FILTER, c->pid, (void *)i, f->insns) != n)
			return fail_target(c, e, "E_SECCOMP", errno, "ptrace(PTRACE_SECCOMP_GET_FILTER, %lu)", i);
		f->len = (unsigned short)n;
		/* only SECCOMP_FILTER_FLAG_LOG is reported; older kernels lack the call */
		if (ptrace(PTRACE_SECCOMP_GET_METADATA, c->pid, (void *)sizeof(md), &md) == 0)
			f->flags = md.flags & SECCOMP_FILTER_FLAG_LOG;
	}
	return fail(e, "E_SECCOMP", E2BIG, "init has more than %d seccomp filters", UB_CTX_MAX_FILTERS);
}

/* init's filters, through ptrace (the only interface that returns them):
 * attach, stop, copy, detach at once.  Another upcall's spawner may hold the
 * tracer slot for a moment (EPERM), so that is retried briefly.
 *
 * ptrace takes a pid, not a pidfd: if init exited (and was reaped) after the
 * last check, PTRACE_SEIZE may have attached to whatever process got its pid
 * since.  So the pidfd is checked between the seize and the interrupt: still
 * not readable means init has not exited yet, so the pid was still its at the
 * seize.  Otherwise nothing is done to the tracee: a tracee that is running
 * cannot be detached without stopping it (PTRACE_DETACH wants a ptrace-stop),
 * so the detach is our exit, which every caller does on failure at once and
 * which the kernel performs without stopping the tracee (exit_ptrace), a
 * pending signal kept. */
static int capture_seccomp(struct ub_context *c, struct ub_ctx_error *e)
{
	long long deadline = now_ms() + PTRACE_WAIT_MS;
	int inject = 0, rc;

	if (c->seccomp_mode != 2) {
		field(c, UB_F_SECCOMP, "none");
		return 0;
	}
	while (ptrace(PTRACE_SEIZE, c->pid, 0, 0) < 0) {
		if (errno != EPERM || now_ms() > deadline)
			return fail_target(c, e, "E_SECCOMP", errno, "ptrace(PTRACE_SEIZE, init)");
		sleep_ms(2);
	}
	if (ub_ctx_target_exited(c->pidfd))
		return fail(e, "E_INIT_EXITED", ESRCH,
			    "init exited before PTRACE_SEIZE: pid %d may be another process's now; left running", (int)c->pid);
	rc = stop_tracee(c, &inject, e);
	if (rc == 0)
		rc = read_filters(c, e);
	if (ptrace(PTRACE_DETACH, c->pid, 0, (void *)(long)inject) < 0 && rc == 0 && errno != ESRCH)
		rc = fail(e, "E_SECCOMP", errno, "ptrace(PTRACE_DETACH, init)");
	if (rc < 0)
		return -1;
	if (c->nfilters == 0) {
		field(c, UB_F_SECCOMP, "none");
		return 0;
	}
	field(c, UB_F_SECCOMP, "ok: %zu filters", c->nfilters);
	/* seccomp(2) needs no_new_privs or CAP_SYS_ADMIN in the user namespace. */
	if (!c->nnp && !(c->cap_eff & (1ULL << CAP_SYS_ADMIN_BIT)))
		field(c, UB_F_NNP, "degraded: set to 1 to install init's seccomp filters (init has 0 and no CAP_SYS_ADMIN)");
	return check_alive(c, e, "ptrace");
}

static int stat_namespace(int pidfd, unsigned long req, struct stat *st)
{
	int fd = ub_pidfd_ns_open(pidfd, req);

	if (fd < 0)
		return -1;
	if (fstat(fd, st) < 0) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	close(fd);
	return 0;
}

/* Only the namespaces the target does not already share with us: setns()
 * into one's own user namespace fails with EINVAL. */
int ub_ctx_namespace_mask(struct ub_context *c, struct ub_ctx_error *e)
{
	char names[96] = "";
	size_t i, n = 0;
	int self;

	self = (int)syscall(UB_NR_pidfd_open, getpid(), 0);
	if (self < 0)
		return fail(e, "E_NS_OPEN", errno, "pidfd_open(self)");
	c->nsmask = 0;
	for (i = 0; i < ARRAY_SIZE(namespace_types); i++) {
		const struct namespace_type *nt = &namespace_types[i];
		struct stat theirs, ours;

		if (stat_namespace(c->pidfd, nt->target_ioctl, &theirs) < 0) {
			if (errno == EOPNOTSUPP) /* the kernel lacks this type */
				continue;
			close(self);
			return fail_target(c, e, "E_NS_OPEN", errno, "open %s namespace of target", nt->name);
		}
		if (stat_namespace(self, nt->self_ioctl, &ours) < 0) {
			close(self);
			return fail(e, "E_NS_OPEN", errno, "open %s namespace of self", nt->name);
		}
		if (theirs.st_dev != ours.st_dev || theirs.st_ino != ours.st_ino) {
			c->nsmask |= nt->nstype;
			n += snprintf(names + n, sizeof(names) - n, "%s%s", n ? "," : "", nt->name);
		}
	}
	close(self);
	/* say so when the namespaces were found by /proc (before Linux 6.11) */
	field(c, UB_F_NAMESPACES, c->nsmask ? "entered: %s%s" : "ok: all shared%s%s", names,
	      ub_compat_has(UB_COMPAT_PIDFD_NS) ? "" : " (found via /proc/<pid>/ns: no PIDFD_GET_*_NAMESPACE)");
	return 0;
}

int ub_ctx_capture(struct ub_context *c, struct ub_ctx_error *e)
{
	char *text = NULL;
	int f;

	if (c->host) {
		for (f = 0; f < UB_F_COUNT; f++)
			if (f != UB_F_KEYRING && f != UB_F_DUMPABLE)
				field(c, f, "skipped: host");
		c->nsmask = 0;
		return 0;
	}
	if (read_at(AT_FDCWD, "/proc/sys/kernel/cap_last_cap", &text, NULL) == 0) {
		c->last_cap = atoi(text);
		free(text);
	}
	if (capture_creds(c, e) < 0 || capture_limits(c, e) < 0 || capture_sched(c, e) < 0 || capture_cgroups(c, e) < 0 ||
	    capture_lsm(c, e) < 0 || capture_root(c, e) < 0 || capture_seccomp(c, e) < 0 ||
	    ub_ctx_namespace_mask(c, e) < 0)
		return -1;
	return 0;
}

/* ------------------------------------------------------------------------
 * apply, outside: everything that needs the host's view or host privilege
 */

static int write_string(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
	ssize_t n;
	int err;

	if (fd < 0)
		return -1;
	n = write(fd, s, strlen(s));
	err = errno;
	close(fd);
	errno = err;
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

static int join_cgroups(struct ub_context *c, struct ub_ctx_error *e)
{
	char pid[24];
	size_t i;

	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	for (i = 0; i < c->ncgroups; i++)
		if (write_string(c->cgroup_procs[i], pid) < 0)
			return fail(e, "E_CGROUP", errno, "write %s", c->cgroup_procs[i]);
	return 0;
}

/* Lowering is always allowed; raising a hard limit above ours needs
 * CAP_SYS_RESOURCE in the initial user namespace.  Without it we keep our
 * hard limit, take init's soft one up to it, and say so. */
static int apply_rlimits(struct ub_context *c, struct ub_ctx_error *e)
{
	int r;

	for (r = 0; r < RLIM_NLIMITS; r++) {
		struct rlimit ours, want = c->rlim[r];

		if (getrlimit(r, &ours) < 0)
			return fail(e, "E_RLIMIT", errno, "getrlimit(%s)", rlimit_names[r]);
		if (ours.rlim_cur == want.rlim_cur && ours.rlim_max == want.rlim_max)
			continue;
		if (setrlimit(r, &want) == 0)
			continue;
		if (errno != EPERM || want.rlim_max <= ours.rlim_max)
			return fail(e, "E_RLIMIT", errno, "setrlimit(%s)", rlimit_names[r]);
		want.rlim_max = ours.rlim_max;
		if (want.rlim_cur > want.rlim_max)
			want.rlim_cur = want.rlim_max;
		if (setrlimit(r, &want) < 0)
			return fail(e, "E_RLIMIT", errno, "setrlimit(%s) capped", rlimit_names[r]);
		if (c->rlim[r].rlim_max == RLIM_INFINITY)
			degrade(c, UB_F_RLIMITS, "%s hard unlimited kept at %llu (no CAP_SYS_RESOURCE)", rlimit_names[r],
				(unsigned long long)ours.rlim_max);
		else
			degrade(c, UB_F_RLIMITS, "%s hard %llu kept at %llu (no CAP_SYS_RESOURCE)", rlimit_names[r],
				(unsigned long long)c->rlim[r].rlim_max, (unsigned long long)ours.rlim_max);
	}
	return 0;
}

static int apply_oom(struct ub_context *c, struct ub_ctx_error *e)
{
	char *text = NULL, want[24];
	int ours;

	if (read_at(AT_FDCWD, "/proc/self/oom_score_adj", &text, NULL) < 0)
		return fail(e, "E_PROC", errno, "read /proc/self/oom_score_adj");
	ours = atoi(text);
	free(text);
	if (ours == c->oom_score_adj)
		return 0;
	snprintf(want, sizeof(want), "%d\n", c->oom_score_adj);
	if (write_string("/proc/self/oom_score_adj", want) == 0)
		return 0;
	if (errno != EACCES && errno != EPERM)
		return fail(e, "E_PROC", errno, "write /proc/self/oom_score_adj");
	/* lowering below the minimum needs CAP_SYS_RESOURCE */
	degrade(c, UB_F_OOM, "%d kept instead of %d (lowering needs CAP_SYS_RESOURCE)", ours, c->oom_score_adj);
	return 0;
}

static int apply_personality(struct ub_context *c, struct ub_ctx_error *e)
{
	int ours = personality(0xffffffff);

	if (ours >= 0 && (unsigned long)ours == c->persona)
		return 0;
	if (personality(c->persona) < 0)
		return fail(e, "E_CREDS", errno, "personality(0x%lx)", c->persona);
	return 0;
}

/* After the cgroups (a cpuset narrows the affinity we may set).  Lowering
 * nice or choosing a real-time policy needs CAP_SYS_NICE, which host root
 * has; what fails is reported as degraded.  The I/O priority is compared
 * after nice: an unset one is derived from nice, and setting it would pin it. */
static void apply_sched(struct ub_context *c)
{
	struct sched_param sp = { .sched_priority = c->sched_priority }, ours;
	cpu_set_t set, cur;
	int n;

	if ((sched_getscheduler(0) != c->policy || sched_getparam(0, &ours) < 0 || ours.sched_priority != c->sched_priority) &&
	    sched_setscheduler(0, c->policy, &sp) < 0)
		degrade(c, UB_F_SCHED, "policy %d: %s", c->policy, strerror(errno));
	errno = 0;
	n = getpriority(PRIO_PROCESS, 0);
	if (n != c->nice && setpriority(PRIO_PROCESS, 0, c->nice) < 0)
		degrade(c, UB_F_SCHED, "nice %d kept instead of %d: %s", n, c->nice, strerror(errno));
	n = (int)syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0);
	if (n != c->ioprio && syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, c->ioprio) < 0)
		degrade(c, UB_F_SCHED, "ioprio 0x%x: %s", c->ioprio, strerror(errno));
	CPU_ZERO(&set);
	memcpy(&set, c->affinity, c->affinity_len);
	if ((sched_getaffinity(0, sizeof(cur), &cur) < 0 || !CPU_EQUAL(&cur, &set)) &&
	    sched_setaffinity(0, sizeof(set), &set) < 0)
		degrade(c, UB_F_SCHED, "CPU affinity: %s", strerror(errno));
	if (prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) != c->thp_disabled &&
	    prctl(PR_SET_THP_DISABLE, c->thp_disabled, 0, 0, 0) < 0)
		degrade(c, UB_F_SCHED, "THP disable: %s", strerror(errno));
	if (c->timerslack_ns && (unsigned long)prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0) != c->timerslack_ns &&
	    prctl(PR_SET_TIMERSLACK, c->timerslack_ns, 0, 0, 0) < 0)
		degrade(c, UB_F_SCHED, "timer slack: %s", strerror(errno));
}

/* The label goes to our own attr/exec, from the host's /proc; the LSMs keep
 * it across fork (SELinux in the cred, AppArmor in the task context), so the
 * exec at the end of the chain picks it up. */
static int apply_lsm(struct ub_context *c, struct ub_ctx_error *e)
{
	size_t n = strlen(c->lsm_value);

	if (!n)
		return 0;
	c->lsm_fd = open(c->lsm_exec_path, O_WRONLY | O_CLOEXEC);
	if (c->lsm_fd < 0)
		return fail(e, "E_LSM", errno, "open %s", c->lsm_exec_path);
	if (write(c->lsm_fd, c->lsm_value, n) != (ssize_t)n)
		return fail(e, "E_LSM", errno, "write %s", c->lsm_exec_path);
	return 0;
}

int ub_ctx_apply_outside(struct ub_context *c, struct ub_ctx_error *e)
{
	/* Before the first setns: nothing in the container may ptrace us or open
	 * our /proc files while we cross.  Inherited by every child; exec then
	 * applies the kernel's rules. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return fail(e, "E_CREDS", errno, "prctl(PR_SET_DUMPABLE)");
	if (c->host)
		return 0;
	if (join_cgroups(c, e) < 0 || apply_oom(c, e) < 0 || apply_personality(c, e) < 0)
		return -1;
	apply_sched(c);
	if (apply_lsm(c, e) < 0 || apply_rlimits(c, e) < 0)
		return -1;
	return 0;
}

/* ------------------------------------------------------------------------
 * enter: namespaces, root, credentials
 */

static int capset3(uint64_t eff, uint64_t prm, uint64_t inh)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2] = {
		{ (uint32_t)eff, (uint32_t)prm, (uint32_t)inh },
		{ (uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32) },
	};

	return (int)syscall(SYS_capset, &h, d);
}

static int capget3(uint64_t *eff, uint64_t *prm, uint64_t *inh)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d) < 0)
		return -1;
	*eff = d[0].effective | (uint64_t)d[1].effective << 32;
	*prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
	*inh = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
	return 0;
}

static int set_groups(struct ub_context *c, struct ub_ctx_error *e)
{
	gid_t cur[64];
	int n;

	if (setgroups(c->ngroups, c->groups) == 0)
		return 0;
	if (errno != EPERM || !c->setgroups_denied)
		return fail(e, "E_CREDS", errno, "setgroups");
	n = getgroups(ARRAY_SIZE(cur), cur);
	if (n == (int)c->ngroups && (n == 0 || memcmp(cur, c->groups, n * sizeof(gid_t)) == 0))
		return 0;
	degrade(c, UB_F_CREDS, "setgroups is denied in init's user namespace: supplementary groups not set");
	return 0;
}

/*
 * The order matters:
 *  - KEEPCAPS, or the uid change from 0 clears the permitted set;
 *  - the inheritable set is set while we still hold CAP_SETPCAP and a full
 *    bounding set (capset refuses inheritable bits outside the bounding set);
 *  - the bounding set is dropped while we still hold CAP_SETPCAP;
 *  - effective is restored after setresuid (a change away from euid 0 clears
 *    it), so that setfsuid/setfsgid may pick any id;
 *  - then init's three sets, then the ambient set (needs permitted and
 *    inheritable bits in place).
 */
static int apply_creds(struct ub_context *c, struct ub_ctx_error *e)
{
	uint64_t eff, prm, inh;
	int cap;

	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		return fail(e, "E_CREDS", errno, "prctl(PR_SET_KEEPCAPS)");
	if (capget3(&eff, &prm, &inh) < 0 || capset3(eff, prm, c->cap_inh) < 0)
		return fail(e, "E_CAPS", errno, "capset(inheritable)");
	for (cap = 0; cap <= c->last_cap; cap++)
		if (!(c->cap_bnd & (1ULL << cap)) && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1 &&
		    prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			return fail(e, "E_CAPS", errno, "prctl(PR_CAPBSET_DROP, %d)", cap);
	if (set_groups(c, e) < 0)
		return -1;
	if (setresgid(c->gid[0], c->gid[1], c->gid[2]) < 0)
		return fail(e, "E_CREDS", errno, "setresgid(%u, %u, %u)", c->gid[0], c->gid[1], c->gid[2]);
	if (setresuid(c->uid[0], c->uid[1], c->uid[2]) < 0)
		return fail(e, "E_CREDS", errno, "setresuid(%u, %u, %u)", c->uid[0], c->uid[1], c->uid[2]);
	if (capset3(prm, prm, c->cap_inh) < 0)
		return fail(e, "E_CAPS", errno, "capset(restore effective)");
	setfsgid(c->gid[3]);
	setfsuid(c->uid[3]);
	if ((gid_t)setfsgid(-1) != c->gid[3] || (uid_t)setfsuid(-1) != c->uid[3])
		return fail(e, "E_CREDS", EPERM, "setfsuid(%u)/setfsgid(%u)", c->uid[3], c->gid[3]);
	if (capset3(c->cap_eff, c->cap_prm, c->cap_inh) < 0)
		return fail(e, "E_CAPS", errno, "capset(init's sets)");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		return fail(e, "E_CAPS", errno, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
	for (cap = 0; cap <= c->last_cap; cap++)
		if ((c->cap_amb & (1ULL << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
			return fail(e, "E_CAPS", errno, "prctl(PR_CAP_AMBIENT_RAISE, %d)", cap);
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		return fail(e, "E_CREDS", errno, "prctl(PR_SET_KEEPCAPS, 0)");
	return 0;
}

static int enter_root(struct ub_context *c, struct ub_ctx_error *e)
{
	if (fchdir(c->rootfd) < 0)
		return fail(e, "E_ROOT", errno, "fchdir(init's root)");
	if (chroot(".") < 0)
		return fail(e, "E_ROOT", errno, "chroot(init's root)");
	close(c->rootfd);
	c->rootfd = -1;
	return 0;
}

/* A forked child keeps init's cwd: the directory itself, entered while we
 * still hold init's capabilities in its user namespace (as init got there). */
static int enter_init_cwd(struct ub_context *c, struct ub_ctx_error *e)
{
	char got[PATH_MAX];

	if (fchdir(c->cwdfd) < 0)
		return fail(e, "E_CHDIR", errno, "fchdir(init's cwd)");
	close(c->cwdfd);
	c->cwdfd = -1;
	/* glibc's getcwd fails (ENOENT) for a directory outside our root */
	if (!getcwd(got, sizeof(got)) || got[0] != '/') {
		if (chdir("/") < 0)
			return fail(e, "E_CHDIR", errno, "chdir(/)");
		field(c, UB_F_CWD, "degraded: init's cwd is outside its root; / instead");
		return 0;
	}
	field(c, UB_F_CWD, "init's: %.150s", got);
	return 0;
}

static int enter_cwd(const char *cwd, struct ub_ctx_error *e)
{
	char got[PATH_MAX], want[PATH_MAX];

	if (!cwd || !*cwd)
		cwd = "/";
	if (chdir(cwd) < 0)
		return fail(e, "E_CHDIR", errno, "chdir(%.150s)", cwd);
	/* glibc's getcwd fails (ENOENT) for a directory outside our root. */
	errno = 0;
	if (!getcwd(got, sizeof(got)) || got[0] != '/')
		return fail(e, "E_CHDIR", errno ? errno : ENOENT, "getcwd after chdir(%.150s)", cwd);
	if (!realpath(cwd, want) || strcmp(got, want) != 0)
		return fail(e, "E_CHDIR", EXDEV, "cwd is %.90s, expected %.90s", got, cwd);
	return 0;
}

int ub_ctx_enter(struct ub_context *c, const char *cwd, struct ub_ctx_error *e)
{
	if (!c->host) {
		if (check_alive(c, e, "setup") < 0)
			return -1;
		if (c->nsmask && setns(c->pidfd, c->nsmask) < 0)
			return fail_target(c, e, "E_SETNS", errno, "setns(pidfd, 0x%x)", c->nsmask);
		/* commit_creds() resets dumpable to suid_dumpable on a change of
		 * user namespace or ids; set it again after each. */
		if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
			return fail(e, "E_CREDS", errno, "prctl(PR_SET_DUMPABLE)");
		if (enter_root(c, e) < 0 || (!cwd && enter_init_cwd(c, e) < 0) || apply_creds(c, e) < 0)
			return -1;
		if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
			return fail(e, "E_CREDS", errno, "prctl(PR_SET_DUMPABLE)");
		umask(c->umask);
		if (!cwd)
			return 0;
	}
	field(c, UB_F_CWD, "request: %.150s", cwd ? cwd : "/");
	return enter_cwd(cwd ? cwd : "/", e);
}

/* ------------------------------------------------------------------------
 * the final process: keyring, no_new_privs, seccomp, exec
 */

int ub_ctx_prepare_final(struct ub_context *c, struct ub_ctx_error *e)
{
	/* A new anonymous session keyring, owned by the credentials just set:
	 * no key of the host's session is reachable from here on. */
	if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0)
		return fail(e, "E_KEYRING", errno, "keyctl(KEYCTL_JOIN_SESSION_KEYRING)");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return fail(e, "E_CREDS", errno, "prctl(PR_SET_DUMPABLE)");
	if (!c->host && c->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return fail(e, "E_CREDS", errno, "prctl(PR_SET_NO_NEW_PRIVS)");
	return 0;
}

int ub_ctx_seal(struct ub_context *c, struct ub_ctx_error *e)
{
	size_t i;

	if (c->host || c->nfilters == 0)
		return 0;
	if (!c->nnp && !(c->cap_eff & (1ULL << CAP_SYS_ADMIN_BIT)) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return fail(e, "E_SECCOMP", errno, "prctl(PR_SET_NO_NEW_PRIVS) for seccomp");
	/* oldest first, so the filter stack ends up in init's order */
	for (i = c->nfilters; i-- > 0;) {
		struct sock_fprog prog = { c->filters[i].len, c->filters[i].insns };

		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, c->filters[i].flags, &prog) < 0)
			return fail(e, "E_SECCOMP", errno, "seccomp(SECCOMP_SET_MODE_FILTER) filter %zu", i);
	}
	return 0;
}

/* Errors that mean "not here, try the next PATH entry" (execvp's list). */
static int try_next(int err)
{
	return err == ENOENT || err == ENOTDIR || err == EACCES || err == ESTALE || err == ELOOP ||
	       err == ENAMETOOLONG || err == ENODEV || err == ETIMEDOUT;
}

int ub_ctx_exec(char *const argv[], char *const envp[], const char *path, struct ub_ctx_error *e)
{
	const char *name = argv[0], *p;
	int eacces = 0;

	if (!name || !*name)
		return fail(e, "E_EXEC", ENOENT, "execve: empty program name");
	/* after chroot, an absolute path (and every symlink in it) resolves in
	 * the container's root: no host path can be reached */
	if (strchr(name, '/')) {
		execve(name, argv, envp);
		return fail(e, "E_EXEC", errno, "execve(%.150s)", name);
	}
	for (p = path ? path : UB_CTX_DEFAULT_PATH;; p++) {
		char buf[PATH_MAX];
		size_t n = strcspn(p, ":");

		if (n + strlen(name) + 2 <= sizeof(buf)) {
			snprintf(buf, sizeof(buf), "%.*s%s%s", (int)n, p, n ? "/" : "", name);
			execve(buf, argv, envp);
			if (!try_next(errno))
				return fail(e, "E_EXEC", errno, "execve(%.150s)", buf);
			eacces |= errno == EACCES;
		}
		p += n;
		if (!*p)
			break;
	}
	return fail(e, "E_EXEC", eacces ? EACCES : ENOENT, "execve: %.150s not found in PATH", name);
}
