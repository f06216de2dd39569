/*
 * capture.c: reading init's context from the host's view (ub_ctx_capture):
 * credentials and capabilities, rlimits, oom_score_adj, personality,
 * scheduling, cgroups, LSM label, root, seccomp filters, namespaces.
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
#include "ub-kernel.h"
#include "basic/file.h"
#include "basic/proc.h"
#include "basic/time.h"


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

		if (ctx_parse_ull(p, 10, &in, &q) == 0 && ctx_parse_ull(q, 10, &outside, &q) == 0 &&
		    ctx_parse_ull(q, 10, &count, &q) == 0 && host_id >= outside && host_id - outside < count) {
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

		if (!val || ctx_parse_ull(val, 10, &id, &val) < 0)
			return ctx_fail(e, "E_PROC", EINVAL, "parse %s of init's status", what);
		if (map_id(map, id, &out[i]) < 0)
			return ctx_fail(e, "E_CREDS", EOVERFLOW, "%s %llu of init is not mapped in its user namespace", what, id);
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
		if (ctx_parse_ull(p, 10, &id, &p) < 0)
			return ctx_fail(e, "E_PROC", EINVAL, "parse Groups of init's status");
		if (map_id(gid_map, id, &in) < 0)
			return ctx_fail(e, "E_CREDS", EOVERFLOW, "group %llu of init is not mapped in its user namespace", id);
		if (n == cap) {
			gid_t *more = realloc(c->groups, (cap ? cap * 2 : 16) * sizeof(gid_t));
			if (!more)
				return ctx_fail(e, "E_PROC", ENOMEM, "groups");
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
	const char *v = ctx_status_value(status, key);
	unsigned long long x;

	if (!v || ctx_parse_ull(v, 16, &x, NULL) < 0)
		return ctx_fail(e, "E_PROC", EINVAL, "parse %s of init's status", key);
	*out = x;
	return 0;
}

static int parse_int(const char *status, const char *key, int base, long *out)
{
	const char *v = ctx_status_value(status, key);
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

	if (ctx_proc_read(c, "status", &status, e) < 0 || ctx_proc_read(c, "uid_map", &uid_map, e) < 0 ||
	    ctx_proc_read(c, "gid_map", &gid_map, e) < 0)
		goto out;
	if (parse_ids(ctx_status_value(status, "Uid"), uid_map, c->uid, "uid", e) < 0 ||
	    parse_ids(ctx_status_value(status, "Gid"), gid_map, c->gid, "gid", e) < 0 ||
	    parse_groups(c, ctx_status_value(status, "Groups"), gid_map, e) < 0)
		goto out;
	if (parse_cap(status, "CapInh", &c->cap_inh, e) < 0 || parse_cap(status, "CapPrm", &c->cap_prm, e) < 0 ||
	    parse_cap(status, "CapEff", &c->cap_eff, e) < 0 || parse_cap(status, "CapBnd", &c->cap_bnd, e) < 0 ||
	    parse_cap(status, "CapAmb", &c->cap_amb, e) < 0)
		goto out;
	if (parse_int(status, "NoNewPrivs", 10, &v) < 0) {
		ctx_fail(e, "E_PROC", EINVAL, "parse NoNewPrivs of init's status");
		goto out;
	}
	c->nnp = v != 0;
	c->seccomp_mode = parse_int(status, "Seccomp", 10, &v) == 0 ? (int)v : 0;
	if (c->seccomp_mode == 1) {
		ctx_fail(e, "E_SECCOMP", EPERM, "init runs in seccomp strict mode: no process of its context can exec");
		goto out;
	}
	if (parse_int(status, "Umask", 8, &v) < 0) {
		ctx_fail(e, "E_PROC", EINVAL, "parse Umask of init's status");
		goto out;
	}
	c->umask = (mode_t)v & 0777;
	/* setgroups(2) is refused in a user namespace whose setgroups file says deny */
	if (ctx_proc_read(c, "setgroups", &sg, e) < 0)
		goto out;
	c->setgroups_denied = strncmp(sg, "deny", 4) == 0;
	/* PR_SET_THP_DISABLE is inherited across fork and exec */
	c->thp_disabled = parse_int(status, "THP_enabled", 10, &v) == 0 && v == 0;
	ctx_field(c, UB_F_NNP, "%s", c->nnp ? "1" : "0");
	ctx_field(c, UB_F_UMASK, "%04o", (unsigned int)c->umask);
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
int ctx_parse_limits(const char *text, struct rlimit rl[RLIM_NLIMITS])
{
	const char *line = strchr(text, '\n'); /* skip the header */
	int r;

	for (r = 0; r < RLIM_NLIMITS; r++) {
		rlim_t v[2];
		int i;

		if (!line || strlen(++line) < 46)
			return errno = EINVAL, -1;
		for (i = 0; i < 2; i++) {
			const char *s = line + 25 + 20 * i;
			unsigned long long x;

			if (strncmp(s, "unlimited", 9) == 0)
				v[i] = RLIM_INFINITY;
			else if (ctx_parse_ull(s, 10, &x, NULL) == 0)
				v[i] = x;
			else
				return errno = EINVAL, -1;
		}
		rl[r].rlim_cur = v[0];
		rl[r].rlim_max = v[1];
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
			return ctx_fail_target(c, e, "E_RLIMIT", errno, "prlimit(%d, %s)", (int)c->pid, ctx_rlimit_names[r]);
		if (ctx_proc_read(c, "limits", &text, e) < 0)
			return -1;
		r = ctx_parse_limits(text, c->rlim);
		if (r < 0)
			ctx_fail(e, "E_PROC", EINVAL, "parse /proc/%d/limits", (int)c->pid);
		free(text);
		if (r < 0)
			return -1;
	}
	if (ctx_check_alive(c, e, "prlimit") < 0)
		return -1;

	if (ctx_proc_read(c, "oom_score_adj", &text, e) < 0)
		return -1;
	v = strtol(text, NULL, 10);
	c->oom_score_adj = (int)v;
	free(text);

	/* mode 0400, ptrace-read access: fine for host root */
	if (ctx_proc_read(c, "personality", &text, e) < 0)
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
		return ctx_fail_target(c, e, "E_PROC", errno, "getpriority(%d)", (int)c->pid);
	c->policy = sched_getscheduler(c->pid);
	if (c->policy < 0 || sched_getparam(c->pid, &sp) < 0)
		return ctx_fail_target(c, e, "E_PROC", errno, "sched_getscheduler(%d)", (int)c->pid);
	c->sched_priority = sp.sched_priority;
	c->ioprio = (int)syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, c->pid);
	if (c->ioprio < 0)
		return ctx_fail_target(c, e, "E_PROC", errno, "ioprio_get(%d)", (int)c->pid);
	CPU_ZERO(&set);
	if (sched_getaffinity(c->pid, sizeof(set), &set) < 0)
		return ctx_fail_target(c, e, "E_PROC", errno, "sched_getaffinity(%d)", (int)c->pid);
	memcpy(c->affinity, &set, sizeof(c->affinity) < sizeof(set) ? sizeof(c->affinity) : sizeof(set));
	c->affinity_len = sizeof(c->affinity) < sizeof(set) ? sizeof(c->affinity) : sizeof(set);
	if (ub_read_file_at(c->procfd, "timerslack_ns", MAX_PROC_FILE, &text, NULL) == 0) {
		c->timerslack_ns = strtoul(text, NULL, 10);
		free(text);
	}
	if (ctx_check_alive(c, e, "scheduling") < 0)
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
		return ctx_fail(e, "E_SPAWN", EINVAL, "init's scheduling policy %d cannot be given to a child", c->policy);
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

	if (ctx_proc_read(c, "cgroup", &theirs, e) < 0)
		goto out;
	if (ub_read_file_at(AT_FDCWD, "/proc/self/cgroup", MAX_PROC_FILE, &ours, NULL) < 0 ||
	    ub_read_file_at(AT_FDCWD, "/proc/self/mountinfo", MAX_PROC_FILE, &mountinfo, NULL) < 0) {
		ctx_fail(e, "E_CGROUP", errno, "read /proc/self/cgroup or mountinfo");
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
			ctx_fail(e, "E_CGROUP", E2BIG, "init is in too many cgroup hierarchies");
			goto out;
		}
		copy = strdup(mountinfo);
		if (!copy) {
			ctx_fail(e, "E_CGROUP", ENOMEM, "cgroups");
			goto out;
		}
		c->cgroup_procs[c->ncgroups] = cgroup_procs_path(copy, ctrls, path);
		free(copy);
		if (c->cgroup_procs[c->ncgroups])
			c->ncgroups++, moved++;
		else
			ctx_degrade(c, UB_F_CGROUP, "hierarchy %s (%s) not mounted here", line, *ctrls ? ctrls : "cgroup2");
	}
	if (strncmp(c->fields[UB_F_CGROUP], "degraded", 8) != 0)
		ctx_field(c, UB_F_CGROUP, moved ? "ok: joined %d hierarchies" : "ok: already shared", moved);
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
	if (ub_read_file_at(c->procfd, "attr/apparmor/current", MAX_PROC_FILE, &label, NULL) < 0) {
		apparmor = 0;
		if (ub_read_file_at(c->procfd, "attr/current", MAX_PROC_FILE, &label, NULL) < 0) {
			if (errno == EINVAL || errno == ENOENT || errno == EOPNOTSUPP) {
				ctx_field(c, UB_F_LSM, "none: no LSM provides a label");
				return ctx_check_alive(c, e, "attr/current");
			}
			return ctx_fail_target(c, e, "E_LSM", errno, "read /proc/%d/attr/current", (int)c->pid);
		}
	}
	if (ctx_check_alive(c, e, "attr/current") < 0) {
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
		ctx_field(c, UB_F_LSM, "none: init is unconfined");
		free(label);
		return 0;
	}
	c->lsm_exec_path = apparmor && faccessat(AT_FDCWD, "/proc/thread-self/attr/apparmor/exec", W_OK, 0) == 0
		? "/proc/thread-self/attr/apparmor/exec" : "/proc/thread-self/attr/exec";
	snprintf(c->lsm_value, sizeof(c->lsm_value), "%s%s", apparmor ? "exec " : "", label);
	ctx_field(c, UB_F_LSM, "ok: %s", label);
	free(label);
	return 0;
}

static int capture_root(struct ub_context *c, struct ub_ctx_error *e)
{
	/* init's root as the kernel resolves it: the root of its mount namespace,
	 * or wherever it chroot()ed inside it. */
	c->rootfd = openat(c->procfd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (c->rootfd < 0)
		return ctx_fail_target(c, e, "E_ROOT", errno, "open /proc/%d/root", (int)c->pid);
	c->cwdfd = openat(c->procfd, "cwd", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (c->cwdfd < 0)
		return ctx_fail_target(c, e, "E_ROOT", errno, "open /proc/%d/cwd", (int)c->pid);
	return ctx_check_alive(c, e, "open root and cwd");
}

/* PTRACE_INTERRUPT, then wait (bounded) until the tracee is in a ptrace-stop.
 * A signal-delivery-stop counts too; its signal is handed back at detach. */
static int stop_tracee(struct ub_context *c, int *inject, struct ub_ctx_error *e)
{
	long long deadline = ub_now_ms() + PTRACE_WAIT_MS;

	if (ptrace(PTRACE_INTERRUPT, c->pid, 0, 0) < 0)
		return ctx_fail_target(c, e, "E_SECCOMP", errno, "ptrace(PTRACE_INTERRUPT)");
	for (;;) {
		int st;
		pid_t r = waitpid(c->pid, &st, __WALL | WNOHANG);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return ctx_fail_target(c, e, "E_SECCOMP", errno, "waitpid(init) after PTRACE_INTERRUPT");
		if (r > 0 && (WIFEXITED(st) || WIFSIGNALED(st)))
			return ctx_fail(e, "E_INIT_EXITED", ESRCH, "init exited while its seccomp filters were read");
		if (r > 0 && WIFSTOPPED(st)) {
			if ((st >> 16) != PTRACE_EVENT_STOP)
				*inject = WSTOPSIG(st);
			return 0;
		}
		if (ub_now_ms() > deadline)
			return ctx_fail(e, "E_SECCOMP", ETIMEDOUT, "init did not stop for PTRACE_INTERRUPT");
		ub_sleep_ms(1);
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
			return ctx_fail_target(c, e, "E_SECCOMP", n < 0 ? errno : EINVAL, "ptrace(PTRACE_SECCOMP_GET_FILTER, %lu)", i);
		f->insns = calloc((size_t)n, sizeof(struct sock_filter));
		if (!f->insns)
			return ctx_fail(e, "E_SECCOMP", ENOMEM, "seccomp filter");
		c->nfilters = i + 1;
		if (ptrace(PTRACE_SECCOMP_GET_FILTER, c->pid, (void *)i, f->insns) != n)
			return ctx_fail_target(c, e, "E_SECCOMP", errno, "ptrace(PTRACE_SECCOMP_GET_FILTER, %lu)", i);
		f->len = (unsigned short)n;
		/* only SECCOMP_FILTER_FLAG_LOG is reported; older kernels lack the call */
		if (ptrace(PTRACE_SECCOMP_GET_METADATA, c->pid, (void *)sizeof(md), &md) == 0)
			f->flags = md.flags & SECCOMP_FILTER_FLAG_LOG;
	}
	return ctx_fail(e, "E_SECCOMP", E2BIG, "init has more than %d seccomp filters", UB_CTX_MAX_FILTERS);
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
int ctx_capture_seccomp(struct ub_context *c, struct ub_ctx_error *e)
{
	long long deadline = ub_now_ms() + PTRACE_WAIT_MS;
	int inject = 0, rc;

	if (c->seccomp_mode != 2) {
		ctx_field(c, UB_F_SECCOMP, "none");
		return 0;
	}
	while (ptrace(PTRACE_SEIZE, c->pid, 0, 0) < 0) {
		if (errno != EPERM || ub_now_ms() > deadline)
			return ctx_fail_target(c, e, "E_SECCOMP", errno, "ptrace(PTRACE_SEIZE, init)");
		ub_sleep_ms(2);
	}
	if (ub_ctx_target_exited(c->pidfd))
		return ctx_fail(e, "E_INIT_EXITED", ESRCH,
			    "init exited before PTRACE_SEIZE: pid %d may be another process's now; left running", (int)c->pid);
	rc = stop_tracee(c, &inject, e);
	if (rc == 0)
		rc = read_filters(c, e);
	if (ptrace(PTRACE_DETACH, c->pid, 0, (void *)(long)inject) < 0 && rc == 0 && errno != ESRCH)
		rc = ctx_fail(e, "E_SECCOMP", errno, "ptrace(PTRACE_DETACH, init)");
	if (rc < 0)
		return -1;
	if (c->nfilters == 0) {
		ctx_field(c, UB_F_SECCOMP, "none");
		return 0;
	}
	ctx_field(c, UB_F_SECCOMP, "ok: %zu filters", c->nfilters);
	/* seccomp(2) needs no_new_privs or CAP_SYS_ADMIN in the user namespace. */
	if (!c->nnp && !(c->cap_eff & (1ULL << CAP_SYS_ADMIN_BIT)))
		ctx_field(c, UB_F_NNP, "degraded: set to 1 to install init's seccomp filters (init has 0 and no CAP_SYS_ADMIN)");
	return ctx_check_alive(c, e, "ptrace");
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
		return ctx_fail(e, "E_NS_OPEN", errno, "pidfd_open(self)");
	c->nsmask = 0;
	for (i = 0; i < ARRAY_SIZE(namespace_types); i++) {
		const struct namespace_type *nt = &namespace_types[i];
		struct stat theirs, ours;

		if (stat_namespace(c->pidfd, nt->target_ioctl, &theirs) < 0) {
			if (errno == EOPNOTSUPP) /* the kernel lacks this type */
				continue;
			close(self);
			return ctx_fail_target(c, e, "E_NS_OPEN", errno, "open %s namespace of target", nt->name);
		}
		if (stat_namespace(self, nt->self_ioctl, &ours) < 0) {
			close(self);
			return ctx_fail(e, "E_NS_OPEN", errno, "open %s namespace of self", nt->name);
		}
		if (theirs.st_dev != ours.st_dev || theirs.st_ino != ours.st_ino) {
			c->nsmask |= nt->nstype;
			n += snprintf(names + n, sizeof(names) - n, "%s%s", n ? "," : "", nt->name);
		}
	}
	close(self);
	/* say so when the namespaces were found by /proc (before Linux 6.11) */
	ctx_field(c, UB_F_NAMESPACES, c->nsmask ? "entered: %s%s" : "ok: all shared%s%s", names,
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
				ctx_field(c, f, "skipped: host");
		c->nsmask = 0;
		return 0;
	}
	if (ub_read_file_at(AT_FDCWD, "/proc/sys/kernel/cap_last_cap", MAX_PROC_FILE, &text, NULL) == 0) {
		c->last_cap = atoi(text);
		free(text);
	}
	if (capture_creds(c, e) < 0 || capture_limits(c, e) < 0 || capture_sched(c, e) < 0 || capture_cgroups(c, e) < 0 ||
	    capture_lsm(c, e) < 0 || capture_root(c, e) < 0 || ctx_capture_seccomp(c, e) < 0 ||
	    ub_ctx_namespace_mask(c, e) < 0)
		return -1;
	return 0;
}

