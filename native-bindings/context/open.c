/*
 * open.c: the context's errors and fields, reading /proc/<init>, kernel
 * features newer than Linux 6.1 (and their fallbacks), pidfds, and opening the
 * target (ub_ctx_open).  See context.h for the call order and
 * native-bindings/README.md for what each part does and why it sits at its
 * step.  Single-threaded callers only (setns of a user or mount namespace,
 * and several prctl()s, refuse or misbehave otherwise).
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
#include "context/context-internal.h"
#include "ub-json.h"
#include "ub-kernel.h"
#include "basic/file.h"
#include "basic/proc.h"
#include "basic/time.h"


static const char *const field_names[UB_F_COUNT] = {
	[UB_F_NAMESPACES] = "namespaces", [UB_F_ROOT] = "root", [UB_F_CREDS] = "creds",
	[UB_F_CAPS] = "caps", [UB_F_SECUREBITS] = "securebits", [UB_F_NNP] = "no_new_privs",
	[UB_F_SECCOMP] = "seccomp", [UB_F_LSM] = "lsm", [UB_F_CGROUP] = "cgroup",
	[UB_F_RLIMITS] = "rlimits", [UB_F_OOM] = "oom_score_adj", [UB_F_UMASK] = "umask",
	[UB_F_PERSONALITY] = "personality", [UB_F_SCHED] = "sched", [UB_F_CWD] = "cwd",
	[UB_F_KEYRING] = "keyring", [UB_F_DUMPABLE] = "dumpable",
};

const char *const ctx_rlimit_names[RLIM_NLIMITS] = {
	"CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE",
	"MEMLOCK", "AS", "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME",
};
/* ------------------------------------------------------------------------
 * errors and fields
 */

int ctx_fail(struct ub_ctx_error *e, const char *code, int err, const char *fmt, ...)
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

int ctx_check_alive(struct ub_context *c, struct ub_ctx_error *e, const char *after)
{
	if (ub_ctx_target_exited(c->pidfd))
		return ctx_fail(e, "E_INIT_EXITED", ESRCH, "init exited (after %s)", after);
	return 0;
}

void ctx_field(struct ub_context *c, enum ub_ctx_field f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->fields[f], UB_CTX_FIELD_LEN, fmt, ap);
	va_end(ap);
}

/* Add one reason to a field, as "degraded: a; b". */
void ctx_degrade(struct ub_context *c, enum ub_ctx_field f, const char *fmt, ...)
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
		n += snprintf(buf + n, cap - n, "%s\"%s\":\"", f ? "," : "", field_names[f]);
		if (n + 8 < cap)
			n = ub_json_escape(buf, n, cap - 8, c->fields[f]);
		n += snprintf(buf + n, cap - n, "\"");
	}
	if (n + 2 <= cap)
		snprintf(buf + n, cap - n, "}");
}

/* ------------------------------------------------------------------------
 * reading /proc
 */

/* A file of /proc/<init>/, then the check that init is still alive: the fd of
 * /proc/<pid> is bound to the process, and alive-after-read means the pid was
 * not reused before we opened it. */
int ctx_proc_read(struct ub_context *c, const char *name, char **out, struct ub_ctx_error *e)
{
	if (ub_read_file_at(c->procfd, name, MAX_PROC_FILE, out, NULL) < 0)
		return ctx_fail_target(c, e, "E_PROC", errno, "read /proc/%d/%s", c->pid, name);
	if (ub_ctx_target_exited(c->pidfd)) {
		free(*out);
		*out = NULL;
		return ctx_fail(e, "E_INIT_EXITED", ESRCH, "init exited (after reading %s)", name);
	}
	return 0;
}

/* The value of "Key:" in a /proc status text, or NULL. */
const char *ctx_status_value(const char *text, const char *key)
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

int ctx_parse_ull(const char *s, int base, unsigned long long *out, const char **end)
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

/* ------------------------------------------------------------------------
 * kernel features newer than Linux 6.1, and their fallbacks
 */

int ctx_compat_have[UB_COMPAT_COUNT] = { -1, -1 };  /* -1: not probed yet */
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
	if (ctx_compat_have[f] < 0)
		ctx_compat_have[f] = compat_probe(f);
	return ctx_compat_have[f];
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
	const char *p = ctx_status_value(text, key);
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
	if (ub_read_file_at(procdir >= 0 ? procdir : AT_FDCWD, name, MAX_PROC_FILE, &text, NULL) < 0)
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
	if (ub_read_file_at(procdir >= 0 ? procdir : AT_FDCWD, procdir >= 0 ? "self/status" : "/proc/self/status", MAX_PROC_FILE, &text, NULL) < 0)
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
	size_t len;
	unsigned long long v;
	int ppid = -1;

	if (ub_compat_has(UB_COMPAT_PIDFD_INFO))
		return ioctl(pidfd, UB_PIDFD_GET_INFO, &info) == 0 ? (pid_t)info.ppid : -1;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (ub_read_file_at(AT_FDCWD, path, MAX_PROC_FILE, &text, &len) < 0)
		return -1;
	if (ub_proc_stat_field(text, len, UB_STAT_PPID, &v) == 0 && v <= INT_MAX)
		ppid = (int)v;
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
	for (f = 0; f < UB_WATCH_COUNT; f++)
		c->watch_fd[f] = -1;
	c->last_cap = CAP_LAST_CAP;
	ub_compat_init();
	for (f = 0; f < UB_F_COUNT; f++)
		ctx_field(c, f, "ok");
	ctx_field(c, UB_F_SECUREBITS, "not copied: another process's securebits cannot be read; defaults kept");
	ctx_field(c, UB_F_KEYRING, "fresh session keyring");
	ctx_field(c, UB_F_DUMPABLE, "0 until exec");
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
	for (i = 0; i < UB_WATCH_COUNT; i++)
		if (c->watch_fd[i] >= 0)
			close(c->watch_fd[i]), c->watch_fd[i] = -1;
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
			return ctx_fail(e, errno == ESRCH ? "E_INIT_EXITED" : "E_NOT_PIDFD", errno, "%s",
				    ub_compat_has(UB_COMPAT_PIDFD_INFO) ? "ioctl(PIDFD_GET_INFO)" : "Pid: of /proc/self/fdinfo/<pidfd>");
		c->pidfd = t->pidfd;
		c->pid = pid;
		return 0;
	}
	if (t->pid <= 0)
		return ctx_fail(e, "E_BAD_REQUEST", EINVAL, "usage: no target pid");
	c->pidfd = (int)syscall(UB_NR_pidfd_open, t->pid, 0);
	if (c->pidfd < 0)
		return ctx_fail(e, errno == ESRCH ? "E_INIT_EXITED" : "E_NOT_PIDFD", errno, "pidfd_open(%d)", (int)t->pid);
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
			return ctx_fail(e, "E_NS_OPEN", errno, "stat /proc/self/ns/pid");
		if (st.st_ino != want)
			return ctx_fail(e, "E_BAD_REQUEST", EINVAL, "host request: pid namespace %llu is not ours (%llu)",
				    want, (unsigned long long)st.st_ino);
		return 0;
	}
	fd = ub_pidfd_ns_open(c->pidfd, UB_PIDFD_GET_PID_NAMESPACE);
	if (fd < 0)
		return ctx_fail_target(c, e, "E_NS_OPEN", errno, "open pid namespace of pid %d", (int)c->pid);
	if (fstat(fd, &st) < 0) {
		close(fd);
		return ctx_fail(e, "E_NS_OPEN", errno, "fstat pid namespace");
	}
	close(fd);
	if (st.st_ino != want)
		return ctx_fail(e, "E_INIT_EXITED", ESRCH, "pid %d is in pid namespace %llu, not %llu: the init exited and its pid was reused",
			    (int)c->pid, (unsigned long long)st.st_ino, want);
	return ctx_check_alive(c, e, "PIDFD_GET_PID_NAMESPACE");
}

int ub_ctx_open(struct ub_context *c, const struct ub_ctx_target *t, struct ub_ctx_error *e)
{
	char path[64], *stat;
	unsigned long long start;

	c->host = t->host;
	if (open_pidfd(c, t, e) < 0)
		return -1;
	if (ctx_check_alive(c, e, "pidfd_open") < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d", (int)c->pid);
	c->procfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (c->procfd < 0)
		return ctx_fail_target(c, e, errno == ENOENT ? "E_INIT_EXITED" : "E_PROC", errno, "open %s", path);
	if (ctx_check_alive(c, e, "open /proc/<pid>") < 0)
		return -1;
	if (t->start_time) {
		if (ctx_proc_read(c, "stat", &stat, e) < 0)
			return -1;
		if (ub_proc_start_time(stat, &start) < 0) {
			free(stat);
			return ctx_fail(e, "E_PROC", EINVAL, "parse /proc/%d/stat", (int)c->pid);
		}
		free(stat);
		if (start != t->start_time)
			return ctx_fail(e, "E_INIT_EXITED", ESRCH, "pid %d started at %llu, not %llu: the init exited and its pid was reused",
				    (int)c->pid, start, t->start_time);
	}
	if (t->pidns_ino && check_pidns(c, t->pidns_ino, e) < 0)
		return -1;
	return 0;
}

