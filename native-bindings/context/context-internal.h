/*
 * context-internal.h: what the parts of context/ (open.c, capture.c,
 * apply.c, check.c) share, and the selftest (test/context-selftest.c) calls.
 * Not for callers of the context API: they use context.h.
 */
#ifndef UB_CONTEXT_INTERNAL_H
#define UB_CONTEXT_INTERNAL_H

#include <errno.h>
#include <sys/resource.h>

#include "context/context.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_PROC_FILE (1u << 20)
#define PTRACE_WAIT_MS 2000
#define CAP_SYS_ADMIN_BIT 21
#define IOPRIO_WHO_PROCESS 1

/* "CPU", "FSIZE", ...: RLIMIT_* without the prefix, by number. */
extern const char *const ctx_rlimit_names[RLIM_NLIMITS];

/* Record a failure in e (code, errno, the step as printf); returns -1. */
int ctx_fail(struct ub_ctx_error *e, const char *code, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A failing call on the target: gone (ESRCH, or the pidfd polls readable) is
 * E_INIT_EXITED whatever the step. */
#define ctx_fail_target(c, e, code, err, ...) \
	ctx_fail((e), ((err) == ESRCH || ub_ctx_target_exited((c)->pidfd)) ? "E_INIT_EXITED" : (code), (err), __VA_ARGS__)

/* E_INIT_EXITED once init's pidfd polls readable ("init exited (after ...)"). */
int ctx_check_alive(struct ub_context *c, struct ub_ctx_error *e, const char *after);

/* Set field f's text; add one reason to it, as "degraded: a; b". */
void ctx_field(struct ub_context *c, enum ub_ctx_field f, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void ctx_degrade(struct ub_context *c, enum ub_ctx_field f, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A file of /proc/<init>/ (malloc'd), then the check that init is still
 * alive: the fd of /proc/<pid> is bound to the process, and alive-after-read
 * means the pid was not reused before we opened it. */
int ctx_proc_read(struct ub_context *c, const char *name, char **out, struct ub_ctx_error *e);

/* The value of "Key:" in a /proc status text (after the blanks), or NULL. */
const char *ctx_status_value(const char *text, const char *key);

/* strtoull that fails on no digits or overflow; *end (may be NULL) after them. */
int ctx_parse_ull(const char *s, int base, unsigned long long *out, const char **end);

/* /proc/<pid>/limits: a header, then one row per RLIMIT_* ("%-25s%-20s%-20s").
 * 0, or -1 (EINVAL) for a text of another shape. */
int ctx_parse_limits(const char *text, struct rlimit rl[RLIM_NLIMITS]);

/* Each ub_compat_feature: 1 present, 0 absent, -1 not probed yet (open.c);
 * the selftest sets it to take one path or the other. */
extern int ctx_compat_have[UB_COMPAT_COUNT];

/* The seccomp filters of init (capture.c), for the selftest's pid-reuse case. */
int ctx_capture_seccomp(struct ub_context *c, struct ub_ctx_error *e);

#endif /* UB_CONTEXT_INTERNAL_H */
