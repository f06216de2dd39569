/*
 * apply.c: giving the captured context to the calling process: outside
 * (ub_ctx_apply_outside: cgroups, rlimits, oom_score_adj, personality,
 * scheduling, LSM), entering (ub_ctx_enter: namespaces, root, credentials),
 * and the final process (ub_ctx_prepare_final, ub_ctx_seal, ub_ctx_exec).
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
			return ctx_fail(e, "E_CGROUP", errno, "write %s", c->cgroup_procs[i]);
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
			return ctx_fail(e, "E_RLIMIT", errno, "getrlimit(%s)", ctx_rlimit_names[r]);
		if (ours.rlim_cur == want.rlim_cur && ours.rlim_max == want.rlim_max)
			continue;
		if (setrlimit(r, &want) == 0)
			continue;
		if (errno != EPERM || want.rlim_max <= ours.rlim_max)
			return ctx_fail(e, "E_RLIMIT", errno, "setrlimit(%s)", ctx_rlimit_names[r]);
		want.rlim_max = ours.rlim_max;
		if (want.rlim_cur > want.rlim_max)
			want.rlim_cur = want.rlim_max;
		if (setrlimit(r, &want) < 0)
			return ctx_fail(e, "E_RLIMIT", errno, "setrlimit(%s) capped", ctx_rlimit_names[r]);
		if (c->rlim[r].rlim_max == RLIM_INFINITY)
			ctx_degrade(c, UB_F_RLIMITS, "%s hard unlimited kept at %llu (no CAP_SYS_RESOURCE)", ctx_rlimit_names[r],
				(unsigned long long)ours.rlim_max);
		else
			ctx_degrade(c, UB_F_RLIMITS, "%s hard %llu kept at %llu (no CAP_SYS_RESOURCE)", ctx_rlimit_names[r],
				(unsigned long long)c->rlim[r].rlim_max, (unsigned long long)ours.rlim_max);
	}
	return 0;
}

static int apply_oom(struct ub_context *c, struct ub_ctx_error *e)
{
	char *text = NULL, want[24];
	int ours;

	if (ub_read_file_at(AT_FDCWD, "/proc/self/oom_score_adj", MAX_PROC_FILE, &text, NULL) < 0)
		return ctx_fail(e, "E_PROC", errno, "read /proc/self/oom_score_adj");
	ours = atoi(text);
	free(text);
	if (ours == c->oom_score_adj)
		return 0;
	snprintf(want, sizeof(want), "%d\n", c->oom_score_adj);
	if (write_string("/proc/self/oom_score_adj", want) == 0)
		return 0;
	if (errno != EACCES && errno != EPERM)
		return ctx_fail(e, "E_PROC", errno, "write /proc/self/oom_score_adj");
	/* lowering below the minimum needs CAP_SYS_RESOURCE */
	ctx_degrade(c, UB_F_OOM, "%d kept instead of %d (lowering needs CAP_SYS_RESOURCE)", ours, c->oom_score_adj);
	return 0;
}

static int apply_personality(struct ub_context *c, struct ub_ctx_error *e)
{
	int ours = personality(0xffffffff);

	if (ours >= 0 && (unsigned long)ours == c->persona)
		return 0;
	if (personality(c->persona) < 0)
		return ctx_fail(e, "E_CREDS", errno, "personality(0x%lx)", c->persona);
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
		ctx_degrade(c, UB_F_SCHED, "policy %d: %s", c->policy, strerror(errno));
	errno = 0;
	n = getpriority(PRIO_PROCESS, 0);
	if (n != c->nice && setpriority(PRIO_PROCESS, 0, c->nice) < 0)
		ctx_degrade(c, UB_F_SCHED, "nice %d kept instead of %d: %s", n, c->nice, strerror(errno));
	n = (int)syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0);
	if (n != c->ioprio && syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, c->ioprio) < 0)
		ctx_degrade(c, UB_F_SCHED, "ioprio 0x%x: %s", c->ioprio, strerror(errno));
	CPU_ZERO(&set);
	memcpy(&set, c->affinity, c->affinity_len);
	if ((sched_getaffinity(0, sizeof(cur), &cur) < 0 || !CPU_EQUAL(&cur, &set)) &&
	    sched_setaffinity(0, sizeof(set), &set) < 0)
		ctx_degrade(c, UB_F_SCHED, "CPU affinity: %s", strerror(errno));
	if (prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) != c->thp_disabled &&
	    prctl(PR_SET_THP_DISABLE, c->thp_disabled, 0, 0, 0) < 0)
		ctx_degrade(c, UB_F_SCHED, "THP disable: %s", strerror(errno));
	if (c->timerslack_ns && (unsigned long)prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0) != c->timerslack_ns &&
	    prctl(PR_SET_TIMERSLACK, c->timerslack_ns, 0, 0, 0) < 0)
		ctx_degrade(c, UB_F_SCHED, "timer slack: %s", strerror(errno));
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
		return ctx_fail(e, "E_LSM", errno, "open %s", c->lsm_exec_path);
	if (write(c->lsm_fd, c->lsm_value, n) != (ssize_t)n)
		return ctx_fail(e, "E_LSM", errno, "write %s", c->lsm_exec_path);
	return 0;
}

int ub_ctx_apply_outside(struct ub_context *c, struct ub_ctx_error *e)
{
	/* Before the first setns: nothing in the container may ptrace us or open
	 * our /proc files while we cross.  Inherited by every child; exec then
	 * applies the kernel's rules. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return ctx_fail(e, "E_CREDS", errno, "prctl(PR_SET_DUMPABLE)");
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
		return ctx_fail(e, "E_CREDS", errno, "setgroups");
	n = getgroups(ARRAY_SIZE(cur), cur);
	if (n == (int)c->ngroups && (n == 0 || memcmp(cur, c->groups, n * sizeof(gid_t)) == 0))
		return 0;
	ctx_degrade(c, UB_F_CREDS, "setgroups is denied in init's user namespace: supplementary groups not set");
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
		return ctx_fail(e, "E_CREDS", errno, "prctl(PR_SET_KEEPCAPS)");
	if (capget3(&eff, &prm, &inh) < 0 || capset3(eff, prm, c->cap_inh) < 0)
		return ctx_fail(e, "E_CAPS", errno, "capset(inheritable)");
	for (cap = 0; cap <= c->last_cap; cap++)
		if (!(c->cap_bnd & (1ULL << cap)) && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1 &&
		    prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			return ctx_fail(e, "E_CAPS", errno, "prctl(PR_CAPBSET_DROP, %d)", cap);
	if (set_groups(c, e) < 0)
		return -1;
	if (setresgid(c->gid[0], c->gid[1], c->gid[2]) < 0)
		return ctx_fail(e, "E_CREDS", errno, "setresgid(%u, %u, %u)", c->gid[0], c->gid[1], c->gid[2]);
	if (setresuid(c->uid[0], c->uid[1], c->uid[2]) < 0)
		return ctx_fail(e, "E_CREDS", errno, "setresuid(%u, %u, %u)", c->uid[0], c->uid[1], c->uid[2]);
	if (capset3(prm, prm, c->cap_inh) < 0)
		return ctx_fail(e, "E_CAPS", errno, "capset(restore effective)");
	setfsgid(c->gid[3]);
	setfsuid(c->uid[3]);
	if ((gid_t)setfsgid(-1) != c->gid[3] || (uid_t)setfsuid(-1) != c->uid[3])
		return ctx_fail(e, "E_CREDS", EPERM, "setfsuid(%u)/setfsgid(%u)", c->uid[3], c->gid[3]);
	if (capset3(c->cap_eff, c->cap_prm, c->cap_inh) < 0)
		return ctx_fail(e, "E_CAPS", errno, "capset(init's sets)");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		return ctx_fail(e, "E_CAPS", errno, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
	for (cap = 0; cap <= c->last_cap; cap++)
		if ((c->cap_amb & (1ULL << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
			return ctx_fail(e, "E_CAPS", errno, "prctl(PR_CAP_AMBIENT_RAISE, %d)", cap);
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		return ctx_fail(e, "E_CREDS", errno, "prctl(PR_SET_KEEPCAPS, 0)");
	return 0;
}

static int enter_root(struct ub_context *c, struct ub_ctx_error *e)
{
	if (fchdir(c->rootfd) < 0)
		return ctx_fail(e, "E_ROOT", errno, "fchdir(init's root)");
	if (chroot(".") < 0)
		return ctx_fail(e, "E_ROOT", errno, "chroot(init's root)");
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
		return ctx_fail(e, "E_CHDIR", errno, "fchdir(init's cwd)");
	close(c->cwdfd);
	c->cwdfd = -1;
	/* glibc's getcwd fails (ENOENT) for a directory outside our root */
	if (!getcwd(got, sizeof(got)) || got[0] != '/') {
		if (chdir("/") < 0)
			return ctx_fail(e, "E_CHDIR", errno, "chdir(/)");
		ctx_field(c, UB_F_CWD, "degraded: init's cwd is outside its root; / instead");
		return 0;
	}
	ctx_field(c, UB_F_CWD, "init's: %.150s", got);
	return 0;
}

static int enter_cwd(const char *cwd, struct ub_ctx_error *e)
{
	char got[PATH_MAX], want[PATH_MAX];

	if (!cwd || !*cwd)
		cwd = "/";
	if (chdir(cwd) < 0)
		return ctx_fail(e, "E_CHDIR", errno, "chdir(%.150s)", cwd);
	/* glibc's getcwd fails (ENOENT) for a directory outside our root. */
	errno = 0;
	if (!getcwd(got, sizeof(got)) || got[0] != '/')
		return ctx_fail(e, "E_CHDIR", errno ? errno : ENOENT, "getcwd after chdir(%.150s)", cwd);
	if (!realpath(cwd, want) || strcmp(got, want) != 0)
		return ctx_fail(e, "E_CHDIR", EXDEV, "cwd is %.90s, expected %.90s", got, cwd);
	return 0;
}

int ub_ctx_enter(struct ub_context *c, const char *cwd, struct ub_ctx_error *e)
{
	if (!c->host) {
		if (ctx_check_alive(c, e, "setup") < 0)
			return -1;
		if (c->nsmask && setns(c->pidfd, c->nsmask) < 0)
			return ctx_fail_target(c, e, "E_SETNS", errno, "setns(pidfd, 0x%x)", c->nsmask);
		/* commit_creds() resets dumpable to suid_dumpable on a change of
		 * user namespace or ids; set it again after each. */
		if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
			return ctx_fail(e, "E_CREDS", errno, "prctl(PR_SET_DUMPABLE)");
		if (enter_root(c, e) < 0 || (!cwd && enter_init_cwd(c, e) < 0) || apply_creds(c, e) < 0)
			return -1;
		if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
			return ctx_fail(e, "E_CREDS", errno, "prctl(PR_SET_DUMPABLE)");
		umask(c->umask);
		if (!cwd)
			return 0;
	}
	ctx_field(c, UB_F_CWD, "request: %.150s", cwd ? cwd : "/");
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
		return ctx_fail(e, "E_KEYRING", errno, "keyctl(KEYCTL_JOIN_SESSION_KEYRING)");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return ctx_fail(e, "E_CREDS", errno, "prctl(PR_SET_DUMPABLE)");
	if (!c->host && c->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return ctx_fail(e, "E_CREDS", errno, "prctl(PR_SET_NO_NEW_PRIVS)");
	return 0;
}

int ub_ctx_seal(struct ub_context *c, struct ub_ctx_error *e)
{
	size_t i;

	if (c->host || c->nfilters == 0)
		return 0;
	if (!c->nnp && !(c->cap_eff & (1ULL << CAP_SYS_ADMIN_BIT)) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return ctx_fail(e, "E_SECCOMP", errno, "prctl(PR_SET_NO_NEW_PRIVS) for seccomp");
	/* oldest first, so the filter stack ends up in init's order */
	for (i = c->nfilters; i-- > 0;) {
		struct sock_fprog prog = { c->filters[i].len, c->filters[i].insns };

		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, c->filters[i].flags, &prog) < 0)
			return ctx_fail(e, "E_SECCOMP", errno, "seccomp(SECCOMP_SET_MODE_FILTER) filter %zu", i);
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
		return ctx_fail(e, "E_EXEC", ENOENT, "execve: empty program name");
	/* after chroot, an absolute path (and every symlink in it) resolves in
	 * the container's root: no host path can be reached */
	if (strchr(name, '/')) {
		execve(name, argv, envp);
		return ctx_fail(e, "E_EXEC", errno, "execve(%.150s)", name);
	}
	for (p = path ? path : UB_CTX_DEFAULT_PATH;; p++) {
		char buf[PATH_MAX];
		size_t n = strcspn(p, ":");

		if (n + strlen(name) + 2 <= sizeof(buf)) {
			snprintf(buf, sizeof(buf), "%.*s%s%s", (int)n, p, n ? "/" : "", name);
			execve(buf, argv, envp);
			if (!try_next(errno))
				return ctx_fail(e, "E_EXEC", errno, "execve(%.150s)", buf);
			eacces |= errno == EACCES;
		}
		p += n;
		if (!*p)
			break;
	}
	return ctx_fail(e, "E_EXEC", eacces ? EACCES : ENOENT, "execve: %.150s not found in PATH", name);
}

