/*
 * context.h: capture the execution context of a container's init from the
 * host's view and give it to the calling process, step by step, so that what
 * it execs afterwards starts exactly as a child of that init would.
 *
 * Shared by the zygote (zygote/, one fork per upcall) and the one-shot
 * `upcall-spawner exec` (spawner/).  open.c, capture.c, apply.c and check.c
 * implement it.  Nothing here exits or prints: every
 * function returns 0, or -1 and fills a struct ub_ctx_error that the caller
 * reports in its own format.  See native-bindings/README.md for the order of
 * the steps and why each one sits where it does.
 *
 * The calls, in order, and which process makes them:
 *
 *   ub_ctx_open            outside  pidfd, identity checks (start time, pid ns)
 *   ub_ctx_capture         outside  read /proc/<init>/..., ptrace for seccomp
 *   ub_ctx_apply_outside   outside  non-dumpable, cgroups, rlimits, oom, LSM
 *   ub_ctx_enter           crosses  setns, chroot, credentials, caps, umask, cwd
 *   -- fork (the pid namespace applies to children only) --
 *   ub_ctx_prepare_final   inside   session keyring, no_new_privs
 *   ub_ctx_seal            inside   seccomp filters: the very last step
 *   ub_ctx_exec            inside   argv[0] resolved in the container's root
 *
 * For the zygote's context cache (a template reuses a capture):
 *
 *   ub_ctx_snapshot_read   outside  what every reader sees alike, before capturing
 *   ub_ctx_check           inside   is init's context still the captured one?
 */
#ifndef UB_CONTEXT_H
#define UB_CONTEXT_H

#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#define UB_CTX_MAX_CGROUPS 32
#define UB_CTX_MAX_FILTERS 512
#define UB_CTX_FIELD_LEN 200

/* PATH for a bare program name when the environment has none (the kernel's
 * usermode helper uses the same one). */
#define UB_CTX_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* A failure: a native code (E_SETNS, E_CREDS, ...: see README.md), the step
 * that failed and its errno. */
struct ub_ctx_error {
	const char *code;
	char step[200];
	int err;
};

/* Which process: an inherited pidfd, or a pid whose identity is checked. */
struct ub_ctx_target {
	int pidfd;                      /* >= 0: use it (pid is read from it) */
	pid_t pid;                      /* used when pidfd < 0 */
	unsigned long long start_time;  /* field 22 of /proc/<pid>/stat; 0: no check */
	unsigned long long pidns_ino;   /* inode of its pid namespace; 0: no check */
	int host;                       /* run in our own namespaces and credentials */
};

/* What the caller learns about each part of the context: "ok", "degraded:
 * ...", "none", "skipped: host".  Reported to the broker as "fields". */
enum ub_ctx_field {
	UB_F_NAMESPACES, UB_F_ROOT, UB_F_CREDS, UB_F_CAPS, UB_F_SECUREBITS,
	UB_F_NNP, UB_F_SECCOMP, UB_F_LSM, UB_F_CGROUP, UB_F_RLIMITS,
	UB_F_OOM, UB_F_UMASK, UB_F_PERSONALITY, UB_F_SCHED, UB_F_CWD, UB_F_KEYRING,
	UB_F_DUMPABLE, UB_F_COUNT
};

struct ub_ctx_filter {
	void *insns;                    /* struct sock_filter[len] */
	unsigned short len;
	unsigned long flags;            /* SECCOMP_FILTER_FLAG_LOG or 0 */
};

/* The namespaces a context cache's snapshot compares (check.c). */
#define UB_SNAP_NS 6

/* init's /proc files the context cache's check reads before every use
 * (check.c): opened once, through procfd, and read again with pread; and
 * (UB_WATCH_NS...) O_PATH fds of init's namespaces as the snapshot found
 * them, held only so that the kernel keeps their dentries: each check's
 * fstatat of /proc/<init>/ns/<type> (init's current one) then finds the
 * dentry instead of allocating one. */
enum ub_ctx_watch { UB_WATCH_STATUS, UB_WATCH_CGROUP, UB_WATCH_OOM, UB_WATCH_LSM, UB_WATCH_NS,
		    UB_WATCH_COUNT = UB_WATCH_NS + UB_SNAP_NS };

struct ub_context {
	pid_t pid;
	int pidfd, own_pidfd;           /* own_pidfd: we opened it, we close it */
	int procfd;                     /* /proc/<pid>, bound to the process */
	int rootfd;                     /* /proc/<pid>/root, O_PATH */
	int cwdfd;                      /* /proc/<pid>/cwd, O_PATH */
	int lsm_fd;                     /* our /proc/thread-self/attr/exec, opened outside */
	int watch_fd[UB_WATCH_COUNT];   /* enum ub_ctx_watch: -1 until the first snapshot or check */
	int host;
	int nsmask;

	/* credentials as ids inside init's user namespace */
	uid_t uid[4];                   /* real, effective, saved, fs */
	gid_t gid[4];
	gid_t *groups;
	size_t ngroups;
	int setgroups_denied;
	uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
	int last_cap;
	int nnp, seccomp_mode;
	struct ub_ctx_filter filters[UB_CTX_MAX_FILTERS]; /* [0] is the most recent */
	size_t nfilters;
	mode_t umask;
	unsigned long persona;
	struct rlimit rlim[RLIM_NLIMITS];
	int oom_score_adj;
	/* scheduling, as a forked child inherits it */
	int nice, policy, thp_disabled;
	int sched_priority;
	int ioprio;
	unsigned long timerslack_ns;
	unsigned char affinity[128];    /* cpu_set_t bytes (1024 cpus) */
	size_t affinity_len;
	char *cgroup_procs[UB_CTX_MAX_CGROUPS]; /* host paths of cgroup.procs to join */
	size_t ncgroups;
	char lsm_value[512];            /* what to write to attr/exec; "" for none */
	const char *lsm_exec_path;      /* /proc/thread-self/attr/exec or .../apparmor/exec */

	char fields[UB_F_COUNT][UB_CTX_FIELD_LEN];
};

void ub_ctx_init(struct ub_context *c);
void ub_ctx_release(struct ub_context *c);

int ub_ctx_open(struct ub_context *c, const struct ub_ctx_target *t, struct ub_ctx_error *e);
/* On failure the caller exits at once: a process that got init's pid after init
 * exited may still be our (running, never stopped) tracee, detached by our
 * exit (ctx_capture_seccomp in capture.c). */
int ub_ctx_capture(struct ub_context *c, struct ub_ctx_error *e);
/* Sets c->nsmask: the types whose namespace differs from ours (also done by
 * ub_ctx_capture; the spawner asks first to tell a host target). */
int ub_ctx_namespace_mask(struct ub_context *c, struct ub_ctx_error *e);
int ub_ctx_apply_outside(struct ub_context *c, struct ub_ctx_error *e);
/* cwd NULL: init's own working directory (a forked child's), "/" for host. */
int ub_ctx_enter(struct ub_context *c, const char *cwd, struct ub_ctx_error *e);
int ub_ctx_prepare_final(struct ub_context *c, struct ub_ctx_error *e);
int ub_ctx_seal(struct ub_context *c, struct ub_ctx_error *e);

/* execve(argv[0]) resolved in our (already entered) root; a bare name is
 * searched in path (NULL: UB_CTX_DEFAULT_PATH).  Returns only on failure. */
int ub_ctx_exec(char *const argv[], char *const envp[], const char *path, struct ub_ctx_error *e);


/* True once the process behind pidfd has exited (polls readable). */
int ub_ctx_target_exited(int pidfd);

/* Kernel features newer than Linux 6.1, each probed once per process (or
 * forced off by UB_KERNEL_COMPAT, as the broker's src/ns/kernel-compat.ts
 * reads it; the variable is then removed from our environment so that no
 * program run in a container sees it).  Call ub_compat_init() before forking
 * workers so they inherit the answers. */
enum ub_compat_feature { UB_COMPAT_PIDFD_NS, UB_COMPAT_PIDFD_INFO, UB_COMPAT_COUNT };
void ub_compat_init(void);
int ub_compat_has(enum ub_compat_feature f);
/* A namespace fd of pidfd's process: PIDFD_GET_*_NAMESPACE request req (6.11),
 * else /proc/<pid>/ns/<name> checked alive afterwards.  -1 with errno (ESRCH:
 * exited; EOPNOTSUPP: the kernel lacks the type). */
int ub_pidfd_ns_open(int pidfd, unsigned long req);
/* pidfd's pid in our /proc's pid namespace: PIDFD_GET_INFO (6.13), else "Pid:"
 * of its fdinfo.  -1 with errno (ESRCH: reaped; ENOTTY: not a pidfd). */
pid_t ub_pidfd_pid(int pidfd);
/* A pidfd of `child` (a number in /proc's pid namespace, read from a children
 * list of `parent`), or -1 with errno (ESRCH) unless, after the open, its
 * parent is `parent` and parent_pidfd's process still holds that number: a pid
 * reused between the read of the list and the open is never pinned.  The
 * parent from PIDFD_GET_INFO (6.13), else /proc/<child>/stat read while the
 * new pidfd is still alive. */
int ub_pidfd_open_child(pid_t child, pid_t parent, int parent_pidfd);
/* pidfd's pid as the caller's pid namespace numbers it; before 6.13 from the
 * NSpid lines of its fdinfo and of our status, read in procdir (a host /proc
 * fd, or -1 for "/proc").  -1 with errno. */
pid_t ub_pidfd_vpid(int procdir, int pidfd);

/*
 * The context cache: what a template checks before each use.  Two kinds of
 * evidence that init's context is still the captured one:
 *  - values the kernel shows the same to every reader (rlimits, scheduling,
 *    oom_score_adj, root, cwd, namespaces, LSM label): read before capturing
 *    (ub_ctx_snapshot_read) and again before each use, and compared, so a
 *    change at any time after the snapshot is seen;
 *  - values shown per reader (ids translated into the reader's user
 *    namespace, cgroup paths relative to its cgroup namespace): init's current
 *    ones against what was captured and applied (the context, and the
 *    checker's own cgroups in snapshot.cgroup), both seen from inside.
 * Not checked (bounded by the cache's TTL): personality and timer slack
 * (reading them needs PTRACE_MODE_ATTACH), securebits (never copied).
 */
struct ub_ctx_snapshot {
	int nice, policy, rtprio, ioprio;
	unsigned char affinity[128];
	struct rlimit rlim[RLIM_NLIMITS];
	int oom;
	dev_t dev[2 + UB_SNAP_NS];      /* root, cwd, namespaces */
	ino_t ino[2 + UB_SNAP_NS];
	char lsm[256];
	char cgroup[4096];              /* the checker's cgroups seen from inside: init's as applied (set by the caller) */
};

/* Everything of the snapshot but cgroup, of init whose number in the
 * caller's pid namespace is pid (<= 0: unknown).  0, or -1 with errno and
 * *what the part that could not be read.  Opens c->watch_fd (kept: a
 * template inherits them from the A that took its snapshot). */
int ub_ctx_snapshot_read(struct ub_context *c, pid_t pid, struct ub_ctx_snapshot *s, const char **what);

/* Is init's context still the one captured in c and snap?  1 yes; 0 no, with
 * why.  Everything is read through the host /proc/<init> fd (and the files
 * of c->watch_fd opened through it) or by pid, so no /proc of the container
 * is trusted. */
int ub_ctx_check(struct ub_context *c, pid_t pid, const struct ub_ctx_snapshot *snap, char *why, size_t cap);

/* The fields as one JSON object ({"rlimits":"ok",...}) into buf. */
void ub_ctx_fields_json(const struct ub_context *c, char *buf, size_t cap);

/* Field name for reports ("rlimits", "oom_score_adj", ...). */
const char *ub_ctx_field_name(enum ub_ctx_field f);

#endif /* UB_CONTEXT_H */
