/*
 * check.c: the context cache's snapshot and check (context.h,
 * ub_ctx_snapshot_read and ub_ctx_check), for the zygote's templates.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "context/context.h"
#include "context/context-internal.h"
#include "basic/file.h"

static const char *const snap_ns_names[UB_SNAP_NS] = { "ns/mnt", "ns/net", "ns/uts", "ns/ipc", "ns/cgroup", "ns/time" };

static const char *const watch_names[UB_WATCH_COUNT] = { "status", "cgroup", "oom_score_adj", "attr/current" };

/* init's /proc file w: opened through procfd the first time, then read again
 * (pread at 0) through the fd kept in c.  0 or -1 with errno. */
static int watch_read(struct ub_context *c, enum ub_ctx_watch w, char *out, size_t cap)
{
	if (c->watch_fd[w] < 0 && (c->watch_fd[w] = openat(c->procfd, watch_names[w], O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
		return -1;
	return ub_pread_small(c->watch_fd[w], out, cap);
}

static int limits_file(int procfd, struct rlimit *rl)
{
	char text[4096];

	if (ub_read_small_at(procfd, "limits", text, sizeof(text)) < 0)
		return -1;
	return ctx_parse_limits(text, rl);
}

int ub_ctx_snapshot_read(struct ub_context *c, pid_t pid, struct ub_ctx_snapshot *s, const char **what)
{
	struct sched_param sp;
	cpu_set_t set;
	int r, i;

	*what = "pid";
	if (pid <= 0)
		return -1;
	*what = "scheduling";
	errno = 0;
	s->nice = getpriority(PRIO_PROCESS, (id_t)pid);
	if ((s->nice == -1 && errno) || (s->policy = sched_getscheduler(pid)) < 0 || sched_getparam(pid, &sp) < 0 ||
	    (s->ioprio = (int)syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, pid)) < 0)
		return -1;
	s->rtprio = sp.sched_priority;
	CPU_ZERO(&set);
	if (sched_getaffinity(pid, sizeof(set), &set) < 0)
		return -1;
	memcpy(s->affinity, &set, sizeof(s->affinity));
	*what = "rlimits";
	for (r = 0; r < RLIM_NLIMITS; r++)
		if (prlimit(pid, r, NULL, &s->rlim[r]) < 0)
			break;
	if (r < RLIM_NLIMITS && (errno != EPERM || limits_file(c->procfd, s->rlim) < 0))
		return -1;
	*what = "oom_score_adj";
	{
		char text[32];
		if (watch_read(c, UB_WATCH_OOM, text, sizeof(text)) < 0)
			return -1;
		s->oom = atoi(text);
	}
	for (i = 0; i < 2 + UB_SNAP_NS; i++) {
		struct stat st;

		*what = i == 0 ? "root" : i == 1 ? "cwd" : snap_ns_names[i - 2];
		if (i >= 2 && c->watch_fd[UB_WATCH_NS + i - 2] == -1) { /* the first read: pin the dentry (context.h) */
			int pin = openat(c->procfd, *what, O_PATH | O_CLOEXEC);

			c->watch_fd[UB_WATCH_NS + i - 2] = pin < 0 ? -2 : pin; /* -2: not again */
		}
		if (fstatat(c->procfd, *what, &st, 0) < 0) {
			if (i >= 2 && errno == ENOENT)
				st.st_dev = 0, st.st_ino = 0; /* this kernel lacks the type */
			else
				return -1;
		}
		s->dev[i] = st.st_dev;
		s->ino[i] = st.st_ino;
	}
	*what = "attr/current";
	if (watch_read(c, UB_WATCH_LSM, s->lsm, sizeof(s->lsm)) < 0) {
		if (errno != EINVAL && errno != ENOENT && errno != EOPNOTSUPP)
			return -1;
		snprintf(s->lsm, sizeof(s->lsm), "errno %d", errno);
	}
	return 0;
}

static int status_num(const char *status, const char *key, int base, long *out)
{
	const char *v = ctx_status_value(status, key);

	if (!v)
		return -1;
	*out = strtol(v, NULL, base);
	return 0;
}

static int status_hex_is(const char *status, const char *key, uint64_t want)
{
	const char *v = ctx_status_value(status, key);

	return v && strtoull(v, NULL, 16) == want;
}

/* "Uid:\tr\te\ts\tfs" (already in our user namespace's numbers) against ids[4]. */
static int status_ids_are(const char *status, const char *key, const unsigned int *ids)
{
	const char *v = ctx_status_value(status, key);
	int i;

	if (!v)
		return 0;
	for (i = 0; i < 4; i++) {
		char *end;
		unsigned long x = strtoul(v, &end, 10);

		if (end == v || x != ids[i])
			return 0;
		v = end;
	}
	return 1;
}

static int status_groups_are(const char *status, const gid_t *groups, size_t n)
{
	const char *v = ctx_status_value(status, "Groups");
	size_t i = 0;

	if (!v)
		return 0;
	for (;;) {
		char *end;
		unsigned long x;

		while (*v == ' ' || *v == '\t')
			v++;
		if (*v == '\n' || !*v)
			break;
		x = strtoul(v, &end, 10);
		if (end == v || i >= n || x != groups[i])
			return 0;
		i++;
		v = end;
	}
	return i == n;
}

int ub_ctx_check(struct ub_context *c, pid_t pid, const struct ub_ctx_snapshot *snap, char *why, size_t cap)
{
	struct ub_ctx_snapshot now;
	char status[8192], cg[sizeof(snap->cgroup)];
	const char *what;
	long v;
	int i;

	memset(&now, 0, sizeof(now));
	if (ub_ctx_snapshot_read(c, pid, &now, &what) < 0)
		return snprintf(why, cap, "cannot read %s: %s", what, strerror(errno)), 0;
	if (now.nice != snap->nice || now.policy != snap->policy || now.rtprio != snap->rtprio || now.ioprio != snap->ioprio ||
	    memcmp(now.affinity, snap->affinity, sizeof(now.affinity)) != 0)
		return snprintf(why, cap, "scheduling changed"), 0;
	for (i = 0; i < RLIM_NLIMITS; i++)
		if (now.rlim[i].rlim_cur != snap->rlim[i].rlim_cur || now.rlim[i].rlim_max != snap->rlim[i].rlim_max)
			return snprintf(why, cap, "rlimit %d changed", i), 0;
	if (now.oom != snap->oom)
		return snprintf(why, cap, "oom_score_adj changed"), 0;
	for (i = 0; i < 2 + UB_SNAP_NS; i++)
		if (now.dev[i] != snap->dev[i] || now.ino[i] != snap->ino[i])
			return snprintf(why, cap, "%s changed", i == 0 ? "root" : i == 1 ? "cwd" : snap_ns_names[i - 2]), 0;
	if (strcmp(now.lsm, snap->lsm) != 0)
		return snprintf(why, cap, "LSM label changed"), 0;

	if (watch_read(c, UB_WATCH_STATUS, status, sizeof(status)) < 0)
		return snprintf(why, cap, "cannot read status: %s", strerror(errno)), 0;
	if (!status_ids_are(status, "Uid", c->uid) || !status_ids_are(status, "Gid", c->gid) ||
	    !status_groups_are(status, c->groups, c->ngroups))
		return snprintf(why, cap, "ids changed"), 0;
	if (!status_hex_is(status, "CapInh", c->cap_inh) || !status_hex_is(status, "CapPrm", c->cap_prm) ||
	    !status_hex_is(status, "CapEff", c->cap_eff) || !status_hex_is(status, "CapBnd", c->cap_bnd) ||
	    !status_hex_is(status, "CapAmb", c->cap_amb))
		return snprintf(why, cap, "capabilities changed"), 0;
	if (status_num(status, "NoNewPrivs", 10, &v) < 0 || (v != 0) != c->nnp ||
	    status_num(status, "Seccomp", 10, &v) < 0 || v != c->seccomp_mode ||
	    (c->seccomp_mode == 2 && (status_num(status, "Seccomp_filters", 10, &v) < 0 || (size_t)v != c->nfilters)) ||
	    status_num(status, "Umask", 8, &v) < 0 || (mode_t)(v & 0777) != c->umask ||
	    (status_num(status, "THP_enabled", 10, &v) == 0 && (v == 0) != c->thp_disabled))
		return snprintf(why, cap, "no_new_privs, seccomp, umask or THP changed"), 0;

	if (watch_read(c, UB_WATCH_CGROUP, cg, sizeof(cg)) < 0)
		return snprintf(why, cap, "cannot read cgroup: %s", strerror(errno)), 0;
	if (strcmp(cg, snap->cgroup) != 0)
		return snprintf(why, cap, "cgroups changed"), 0;
	return 1;
}
