/*
 * upcall-zygote: the broker's long-lived, single-threaded spawner.  It reads
 * spawn requests on stdin and writes events on stdout (frames: 4-byte
 * big-endian length + UTF-8 JSON, as docs/protocol.md), and forks per request:
 *
 *   zygote --fork--> A  outside: checks init's identity, reads its context
 *                       from the host's view (context.c), joins its cgroups,
 *                       takes its rlimits, then setns(init_pidfd, mask) once,
 *                       chroot, credentials, capabilities
 *          A --fork--> B  now inside the container's pid namespace
 *          B --clone3(CLONE_PIDFD)--> C  the upcall; B exits at once
 *
 * B exits inside the container's pid namespace, so the kernel re-parents C to
 * the container's init (find_child_reaper() takes the exiting parent's active
 * pid namespace; an intermediate outside it would hand C to the host's init).
 * B sends C's pidfd here over an inherited SOCK_SEQPACKET socketpair
 * (SCM_RIGHTS); A reports "re-parented" once it has reaped B; only then does
 * the zygote tell C to go on (the 'G' byte), so the "started" event means "a
 * child of init".  C's exit comes from its pidfd (POLLIN), its status from
 * PIDFD_GET_INFO + PIDFD_INFO_EXIT once init reaped it, or from field 52 of
 * /proc/<pid>/stat while it is a zombie (an init that never reaps).  Before
 * Linux 6.15 (no PIDFD_INFO_EXIT) the proc connector's exit event gives it.
 *
 * Messages on the socketpair, one per datagram, first byte the kind:
 *   P (+ SCM_RIGHTS fd)  B -> zygote  C's pidfd
 *   R{fields}            A -> zygote  B exited, C is init's child; the fields
 *   E{code,step,errno}   A/B/C -> zygote  a failure before exec
 *   G                    zygote -> C  go on: keyring, seccomp, exec
 *
 * See native-bindings/README.md for the request and event formats.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/keyctl.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "basic/base64.h"
#include "basic/buf.h"
#include "basic/fd.h"
#include "basic/file.h"
#include "basic/frame.h"
#include "basic/proc.h"
#include "basic/time.h"
#include "context/context.h"
#include "netrelay.h"
#include "ub-client.h"
#include "ub-kernel.h"
#include "ub-wire.h"

#define ZYGOTE_VERSION "0.1.0"
#define MAX_OUTQ (256u << 20)
#define KILL_GRACE_MS 2000
#define SHUTDOWN_WAIT_MS 2000
#define MSG_MAX 8192
#define CHILD_SOCK 3
#define TMPL_CTL 4                      /* a template's end of its control socket */
#define MAX_TEMPLATES 256
#define TEMPLATE_SLOTS (MAX_TEMPLATES * 2) /* live ones, and retired ones until reaped */
#define QMSG_MAX (64u << 10)            /* a request forwarded to a template, at most */

enum builtin { BUILTIN_NONE, BUILTIN_ECHO_CONTEXT, BUILTIN_NETRELAY };

struct spawn_args {
	struct ub_ctx_target target;
	int builtin;                    /* enum builtin; BUILTIN_NONE: exec argv */
	int stream;                     /* stdout as "stdout" events; stdin open until "eof" */
	char **argv, **envp;            /* NULL-terminated */
	const char *path;               /* PATH of envp, or NULL */
	char *cwd;
	unsigned char *input;
	size_t input_len;
	long long timeout_ms;
	size_t output_cap;
};

struct stream {
	int fd;
	struct ub_buf data;
	int truncated;
};

/*
 * A template (the context cache): the A of an earlier request that, instead of
 * exiting, stays outside the container with init's context applied (cgroups,
 * rlimits, setns, root, credentials...) and forks a B per request it is sent.
 * Kept for a short time (--context-ttl-ms, --context-idle-ms), and every B
 * checks init's context against the captured one first (check_context): a
 * change sends the request down the cold path, which captures anew.
 */
struct tmpl {
	int used;                       /* slot taken until the process is reaped */
	int live;                       /* takes requests */
	int pidfd, ctl;                 /* T (from its 'T' message), our end of its control socket */
	pid_t init_pid;
	unsigned long long start_time, pidns_ino;
	int host;
	char *fields;                   /* JSON from T once it is ready ('T'), else NULL */
	long long created, last_used;
	unsigned long long uses;
	struct rlimit rlim[RLIM_NLIMITS]; /* ours when T was forked: the base of its degraded limits */
};

struct req {
	int used;
	unsigned long long id;
	struct spawn_args a;
	pid_t apid;
	int apidfd, a_reaped;
	struct tmpl *tmpl;              /* served by (or becoming) this template */
	int becomes_tmpl;               /* our A becomes tmpl */
	int bpidfd, b_exited;           /* B, from its 'P' message: C is init's child once B is gone */
	int via_tmpl, retried, killed, in_eof, stale, checked;
	int started_event;              /* emit "started" (the broker wants the pid early) */
	long long tmpl_created;
	int sock;                       /* our end of the socketpair */
	int in_fd;
	size_t in_off;
	struct stream out, err;
	int cpidfd;
	pid_t cpid;
	int got_r, started, c_exited, have_status, status;
	long long cpid_at_ns;           /* CLOCK_MONOTONIC when C's pid was learned (C alive then) */
	char *fields, *error;
	long long deadline, grace_deadline;
	int timed_out, emitted;
};

static struct req reqs[UB_ZYGOTE_MAX_INFLIGHT];
static struct tmpl tmpls[TEMPLATE_SLOTS];
static int opt_templates = 1;
static long long opt_ttl_ms = 10000, opt_idle_ms = 3000;
static int opt_max_templates = MAX_TEMPLATES;
static struct ub_buf inbuf, outq;
/* not on the stack, so that scrub_foreign() finds them: what was last read
 * from the broker and from an upcall, the last request sent to a template */
static char stdin_tmp[65536], stream_tmp[65536], qmsg_out[QMSG_MAX];
static size_t outq_off, discard;
static int stdin_eof;
static pid_t zygote_pid;

/* ------------------------------------------------------------------------
 * profiling (bench/profile-zygote.sh builds with -DUB_ZYGOTE_PROFILE): every
 * process of a request stamps CLOCK_MONOTONIC into a shared slot; the zygote
 * appends one line per request to /tmp/ub-zygote-profile.<pid>.log.
 */
#ifdef UB_ZYGOTE_PROFILE
#include <sys/mman.h>
enum { PF_PARSED, PF_FORKED, PF_A_START, PF_A_OPEN, PF_A_CAPTURE, PF_A_OUTSIDE, PF_A_ENTER, PF_A_FORK_B,
       PF_B_START, PF_B_CHECKED, PF_B_CLONE, PF_B_SENT, PF_A_REAPED, PF_Z_GOT_P, PF_Z_STARTED, PF_C_GO, PF_Z_C_EXIT, PF_Z_EMIT, PF_COUNT };
static const char *const prof_names[PF_COUNT] = { "parsed", "forked", "a_start", "a_open", "a_capture", "a_outside",
	"a_enter", "a_fork_b", "b_start", "b_checked", "b_clone", "b_sent", "a_reaped", "z_got_p", "z_started", "c_go", "z_c_exit", "z_emit" };
static long long (*prof)[PF_COUNT];
static int prof_slot;
static FILE *prof_out;
#define PROF(slot, k) do { if (prof) prof[(slot)][(k)] = ub_now_ns(); } while (0)
static void prof_init(void)
{
	char path[64];

	prof = mmap(NULL, sizeof(*prof) * UB_ZYGOTE_MAX_INFLIGHT, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (prof == MAP_FAILED)
		prof = NULL;
	snprintf(path, sizeof(path), "/tmp/ub-zygote-profile.%d.log", (int)getpid());
	prof_out = fopen(path, "we");
}
static void prof_dump(int slot)
{
	int k;

	if (!prof || !prof_out)
		return;
	for (k = 0; k < PF_COUNT; k++)
		fprintf(prof_out, "%s%s=%lld", k ? " " : "", prof_names[k], prof[slot][k] ? (prof[slot][k] - prof[slot][0]) / 1000 : -1);
	fputc('\n', prof_out);
	fflush(prof_out);
	memset(prof[slot], 0, sizeof(prof[slot]));
}
#else
#define PROF(slot, k) do { } while (0)
#endif

/* ------------------------------------------------------------------------
 * small helpers
 */

/*
 * What held a request's data (argv, env, cwd, stdin, output, frames, events)
 * is zeroed before it is freed, and a growing buffer is moved by hand (realloc
 * would leave the old copy in a free chunk): every child copies the zygote's
 * heap, and those that stay inside a container (templates, builtins) must find
 * nothing of other tenants' requests in it.  scrub_foreign() clears what is
 * still live in each A right after the fork.
 */
static const char *signal_name(int sig, char *buf, size_t cap)
{
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev)
		snprintf(buf, cap, "SIG%s", abbrev);
	else
		snprintf(buf, cap, "SIG%d", sig);
	return buf;
}

/* ------------------------------------------------------------------------
 * events (zygote -> broker)
 */

static void emit(const char *json, size_t len)
{
	unsigned char hdr[UB_FRAME_HEADER];

	ub_frame_put_len(hdr, (uint32_t)len);
	if (ub_buf_append(&outq, hdr, sizeof(hdr)) < 0 || ub_buf_append(&outq, json, len) < 0) {
		fputs("upcall-zygote: out of memory queueing an event\n", stderr);
		exit(UB_EXIT_SPAWNER);
	}
}

static void emit_error_raw(int have_id, unsigned long long id, const char *code, const char *native,
			   const char *step, int err, const char *message)
{
	char json[2048], idtext[32], s[600], m[600];

	snprintf(idtext, sizeof(idtext), have_id ? "%llu" : "null", id);
	ub_json_escape(s, 0, sizeof(s), step);
	ub_json_escape(m, 0, sizeof(m), message);
	emit(json, snprintf(json, sizeof(json),
			    "{\"id\":%s,\"event\":\"" UB_ZYGOTE_EVENT_ERROR "\",\"code\":\"%s\",\"native\":\"%s\",\"step\":\"%s\",\"errno\":%d,\"message\":\"%s\"}",
			    idtext, code, native, s, err, m));
}

/* A native error (context.c codes) as the broker's code. */
static const char *broker_code(const char *native, int err)
{
	if (strcmp(native, "E_INIT_EXITED") == 0 || strcmp(native, "E_BAD_REQUEST") == 0 ||
	    strcmp(native, "E_UPCALL_TIMEOUT") == 0 || strcmp(native, "E_BUSY") == 0)
		return native;
	if (strcmp(native, "E_EXEC") == 0 && err == ENOENT)
		return "E_NOT_FOUND";
	return "E_SPAWN";
}

static void emit_native_error(struct req *r, const char *native, const char *step, int err)
{
	char message[400];

	snprintf(message, sizeof(message), "%s: %s", step, strerror(err));
	emit_error_raw(1, r->id, broker_code(native, err), native, step, err, message);
}

/* The E message of a child: {"code":..,"step":..,"errno":N} (our own JSON). */
static void emit_child_error(struct req *r)
{
	char *code = NULL, *step = NULL;
	const char *v;
	size_t vlen;
	int err = 0;
	size_t len = strlen(r->error);

	if (ub_json_get_string(r->error, len, "code", &code) < 0 || ub_json_get_string(r->error, len, "step", &step) < 0) {
		emit_native_error(r, "E_SPAWN", "unreadable error report from the spawner", EPROTO);
	} else {
		if (ub_json_find(r->error, len, "errno", &v, &vlen) == 0)
			err = atoi(v);
		emit_native_error(r, code, step, err);
	}
	free(code);
	free(step);
}

static char *base64_of(const struct ub_buf *b)
{
	char *out = ub_base64_encode_alloc((const unsigned char *)(b->p ? b->p : ""), b->len);

	if (!out) {
		fputs("upcall-zygote: out of memory encoding output\n", stderr);
		exit(UB_EXIT_SPAWNER);
	}
	return out;
}

static void emit_exit(struct req *r)
{
	char *o = base64_of(&r->out.data), *e = base64_of(&r->err.data), code[16] = "null", sig[32] = "null", name[24];
	size_t cap = strlen(o) + strlen(e) + (r->fields ? strlen(r->fields) : 2) + 512;
	char *json = malloc(cap);
	int n;

	if (!json) {
		fputs("upcall-zygote: out of memory\n", stderr);
		exit(UB_EXIT_SPAWNER);
	}
	if (r->have_status && WIFEXITED(r->status))
		snprintf(code, sizeof(code), "%d", WEXITSTATUS(r->status));
	else if (r->have_status && WIFSIGNALED(r->status))
		snprintf(sig, sizeof(sig), "\"%s\"", signal_name(WTERMSIG(r->status), name, sizeof(name)));
	n = snprintf(json, cap,
		     "{\"id\":%llu,\"event\":\"" UB_ZYGOTE_EVENT_EXIT "\",\"pid\":%d,\"code\":%s,\"signal\":%s,\"stdoutBase64\":\"%s\",\"stderrBase64\":\"%s\","
		     "\"truncated\":%s,\"timedOut\":%s,\"fields\":%s}",
		     r->id, (int)r->cpid, code, sig, o, e, r->out.truncated || r->err.truncated ? "true" : "false",
		     r->timed_out && !r->killed ? "true" : "false", r->fields ? r->fields : "{}");
	emit(json, (size_t)n);
	ub_free_zeroed(json);
	ub_free_zeroed(o);
	ub_free_zeroed(e);
#ifdef UB_ZYGOTE_PROFILE
	PROF(r - reqs, PF_Z_EMIT);
	prof_dump((int)(r - reqs));
#endif
}

/* ------------------------------------------------------------------------
 * the child processes A, B, C
 */

static void child_report(const struct ub_ctx_error *e)
{
	char msg[1024], step[600];
	int n;

	ub_json_escape(step, 0, sizeof(step), e->step);
	n = snprintf(msg, sizeof(msg), "E{\"code\":\"%s\",\"step\":\"%s\",\"errno\":%d}", e->code, step, e->err);
	send(CHILD_SOCK, msg, (size_t)n, MSG_NOSIGNAL);
}

static void __attribute__((noreturn)) child_fail(const struct ub_ctx_error *e)
{
	child_report(e);
	_exit(UB_EXIT_SPAWNER);
}

static void __attribute__((noreturn)) child_fail_errno(const char *code, const char *step, int err)
{
	struct ub_ctx_error e = { .code = code, .err = err };

	snprintf(e.step, sizeof(e.step), "%s", step);
	child_fail(&e);
}

static void default_signals(void)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t none;
	int sig;

	for (sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL); /* EINVAL for SIGKILL/SIGSTOP/libc-internal: fine */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* builtin "echo-context": what this process is, seen from inside. */
static int builtin_echo_context(void)
{
	static const char *const ns[] = { "user", "mnt", "pid", "net", "uts", "ipc", "cgroup", "time" };
	uid_t ru, eu, su;
	gid_t rg, eg, sg, groups[64];
	char cwd[PATH_MAX], path[64];
	size_t i;
	int n;

	getresuid(&ru, &eu, &su);
	getresgid(&rg, &eg, &sg);
	dprintf(1, "uid %u %u %u %u\n", ru, eu, su, (unsigned)setfsuid(-1));
	dprintf(1, "gid %u %u %u %u\n", rg, eg, sg, (unsigned)setfsgid(-1));
	n = getgroups(64, groups);
	dprintf(1, "groups");
	for (i = 0; n > 0 && i < (size_t)n; i++)
		dprintf(1, " %u", groups[i]);
	dprintf(1, "\n");
	for (i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		struct stat st;

		snprintf(path, sizeof(path), "/proc/self/ns/%s", ns[i]);
		if (stat(path, &st) == 0)
			dprintf(1, "ns %s %s:[%llu]\n", ns[i], ns[i], (unsigned long long)st.st_ino);
		else
			dprintf(1, "ns %s error %d\n", ns[i], errno);
	}
	dprintf(1, "cwd %s\n", getcwd(cwd, sizeof(cwd)) ? cwd : "?");
	dprintf(1, "pid %d ppid %d\n", (int)getpid(), (int)getppid());
	dprintf(1, "dumpable %d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
	dprintf(1, "no_new_privs %d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
	dprintf(1, "session_keyring %ld\n", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
	return 0;
}

static void __attribute__((noreturn)) run_c(struct ub_context *ctx, const struct spawn_args *a)
{
	struct ub_ctx_error e;
	char go;

	/* 0, 1, 2 and the socket (close-on-exec) only: init's pidfd, /proc fds... go */
	syscall(UB_NR_close_range, CHILD_SOCK + 1, ~0U, 0);
	ctx->pidfd = ctx->procfd = ctx->rootfd = ctx->lsm_fd = -1;
	default_signals();
	if (setsid() < 0)
		child_fail_errno("E_FORK", "setsid", errno);
	if (ub_ctx_prepare_final(ctx, &e) < 0)
		child_fail(&e);
	/* wait until the zygote knows our pid and B is gone: then init is our parent */
	if (recv(CHILD_SOCK, &go, 1, 0) != 1 || go != 'G')
		_exit(UB_EXIT_SPAWNER);
	PROF(prof_slot, PF_C_GO);
	if (ub_ctx_seal(ctx, &e) < 0)
		child_fail(&e);
	if (a->builtin == BUILTIN_NETRELAY) {
		close(CHILD_SOCK);
		_exit(netrelay_serve(0, 1) == 0 ? 0 : 1);
	}
	if (a->builtin) {
		close(CHILD_SOCK);
		_exit(builtin_echo_context());
	}
	ub_ctx_exec(a->argv, a->envp, a->path, &e);
	child_report(&e);
	_exit(e.err == ENOENT ? UB_EXIT_NOT_FOUND : UB_EXIT_CANNOT_EXEC);
}

/* The request's cwd, entered by B with init's credentials (as a child of init
 * would chdir), and checked: getcwd must say where we are, inside our root. */
static int enter_request_cwd(const char *cwd, struct ub_ctx_error *e)
{
	char got[PATH_MAX], want[PATH_MAX];

	e->code = "E_CHDIR";
	if (chdir(cwd) < 0) {
		e->err = errno;
		snprintf(e->step, sizeof(e->step), "chdir(%.150s)", cwd);
		return -1;
	}
	errno = 0;
	if (!getcwd(got, sizeof(got)) || got[0] != '/') { /* glibc: ENOENT outside our root */
		e->err = errno ? errno : ENOENT;
		snprintf(e->step, sizeof(e->step), "getcwd after chdir(%.150s)", cwd);
		return -1;
	}
	if (!realpath(cwd, want) || strcmp(got, want) != 0) {
		e->err = EXDEV;
		snprintf(e->step, sizeof(e->step), "cwd is %.90s, expected %.90s", got, cwd);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * the context cache: what a template checks before each use (context.h,
 * ub_ctx_snapshot_read and ub_ctx_check)
 */
static struct ub_ctx_snapshot snap; /* in A and its template: taken once */
static int hostproc = -1;           /* A's host /proc: T reads its own cgroups by self/ */

/* In T: the target is pid 1 of T's own pid namespace (B checked it before
 * forking T), for as long as it lives. */
static int in_template;

/* init's pid as the caller's pid namespace numbers it (B is inside: 1).
 * Before 6.13 it comes from the host /proc that A opened (hostproc): B is
 * chrooted into the container by then; T has closed that fd, and knows. */
static pid_t target_vpid(int pidfd)
{
	if (in_template && !ub_compat_has(UB_COMPAT_PIDFD_INFO)) {
		if (ub_ctx_target_exited(pidfd)) {
			errno = ESRCH;
			return -1;
		}
		return 1;
	}
	return ub_pidfd_vpid(hostproc > 0 ? hostproc : -1, pidfd);
}

static int check_context(const struct ub_context *c, char *why, size_t cap)
{
	return ub_ctx_check(c, target_vpid(c->pidfd), &snap, why, cap);
}

/* ------------------------------------------------------------------------
 * B and the template's loop
 */

/* B (cold path): inside the pid namespace.  Enters the request's cwd, clones
 * C and hands the zygote C's pidfd and its own: C is init's child once B is
 * gone (B exits inside the pid namespace, so the kernel re-parents C to its
 * init), and the zygote watches B's pidfd for that. */
static void __attribute__((noreturn)) run_b(struct ub_context *ctx, const struct spawn_args *a)
{
	int pidfd = -1, fds[2];
	struct clone_args_v0 ca = { .flags = UB_CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&pidfd, .exit_signal = SIGCHLD };
	struct ub_ctx_error e;
	long c;

	PROF(prof_slot, PF_B_START);
	if (a->cwd && enter_request_cwd(a->cwd, &e) < 0)
		child_fail(&e);
	c = syscall(UB_NR_clone3, &ca, sizeof(ca));
	if (c < 0) /* a pid namespace whose init died refuses new pids (ENOMEM) */
		child_fail_errno(ub_ctx_target_exited(ctx->pidfd) ? "E_INIT_EXITED" : "E_FORK", "clone3", errno);
	if (c == 0)
		run_c(ctx, a);
	PROF(prof_slot, PF_B_CLONE);
	fds[0] = pidfd;
	fds[1] = (int)syscall(UB_NR_pidfd_open, getpid(), 0);
	if (fds[1] < 0 || ub_send_fds(CHILD_SOCK, "P", 1, fds, 2, 0) < 0) {
		syscall(UB_NR_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
		child_fail_errno("E_FORK", "send pidfds", errno);
	}
	PROF(prof_slot, PF_B_SENT);
	_exit(0);
}

/*
 * A request forwarded to a template: 'Q', a header, then NUL-terminated
 * strings (argv, envp, cwd), with four fds: stdin, stdout, stderr, socket.
 */
struct qhdr {
	uint32_t builtin, argc, envc, has_cwd, path_index, slot;
};

static int qmsg_size(const struct spawn_args *a)
{
	size_t n = 1 + sizeof(struct qhdr);
	char **p;

	for (p = a->argv; p && *p; p++)
		n += strlen(*p) + 1;
	for (p = a->envp; p && *p; p++)
		n += strlen(*p) + 1;
	if (a->cwd)
		n += strlen(a->cwd) + 1;
	return n > QMSG_MAX ? -1 : (int)n;
}

static void qmsg_write(const struct spawn_args *a, uint32_t slot, char *out)
{
	struct qhdr h = { (uint32_t)a->builtin, 0, 0, a->cwd != NULL, UINT32_MAX, slot };
	char *p = out + 1 + sizeof(h), **q;

	out[0] = 'Q';
	for (q = a->argv; q && *q; q++, h.argc++)
		p = stpcpy(p, *q) + 1;
	for (q = a->envp; q && *q; q++, h.envc++) {
		if (a->path && a->path == *q + 5)
			h.path_index = h.envc;
		p = stpcpy(p, *q) + 1;
	}
	if (a->cwd)
		stpcpy(p, a->cwd);
	memcpy(out + 1, &h, sizeof(h));
}

/* Pointers into msg (which must outlive a); 0 or -1 for a malformed message. */
static int qmsg_read(char *msg, size_t len, struct spawn_args *a)
{
	struct qhdr h;
	char *p = msg + 1 + sizeof(h), *end = msg + len;
	uint32_t i;

	if (len < 1 + sizeof(h) || msg[0] != 'Q' || msg[len - 1] != '\0')
		return -1;
	memcpy(&h, msg + 1, sizeof(h));
	if (h.argc > UB_ZYGOTE_MAX_ARGS || h.envc > UB_ZYGOTE_MAX_ARGS)
		return -1;
	a->builtin = (int)h.builtin;
#ifdef UB_ZYGOTE_PROFILE
	prof_slot = (int)h.slot;
#endif
	a->argv = calloc(h.argc + 1, sizeof(char *));
	a->envp = calloc(h.envc + 1, sizeof(char *));
	if (!a->argv || !a->envp)
		return -1;
	for (i = 0; i < h.argc + h.envc + (h.has_cwd ? 1 : 0); i++) {
		if (p >= end)
			return -1;
		if (i < h.argc)
			a->argv[i] = p;
		else if (i < h.argc + h.envc)
			a->envp[i - h.argc] = p;
		else
			a->cwd = p;
		p += strlen(p) + 1;
	}
	if (h.path_index < h.envc)
		a->path = a->envp[h.path_index] + 5;
	return 0;
}

static int zargc;                   /* main's argv, to rename the template */
static char **zargv;

/* In T: one request.  C is cloned with CLONE_PARENT, so its parent is T's,
 * the container's init, from its first instant; fds are the request's stdin,
 * stdout, stderr and socket (NULL: they already are 0..3, the first request).
 * Then (check) init's context is compared with the captured one while C sets
 * itself up: 'K' lets the zygote start C, 'S' makes it kill C (still waiting
 * for 'G': it ran nothing) and retry cold.  0, or -1 when the context changed
 * (T must go). */
static int t_spawn(struct ub_context *ctx, const struct spawn_args *a, const int *fds, int check)
{
	int pidfd = -1, sock = fds ? fds[3] : CHILD_SOCK, i, rc = 0;
	struct clone_args_v0 ca = { .flags = UB_CLONE_PIDFD | CLONE_PARENT, .pidfd = (uint64_t)(uintptr_t)&pidfd };
	struct ub_ctx_error e;
	long c;

	PROF(prof_slot, PF_B_START);
	c = syscall(UB_NR_clone3, &ca, sizeof(ca));
	if (c == 0) {
		/* our 0..3 are copies of the control socket: the fds we got are above */
		for (i = 0; fds && i < 4; i++)
			dup2(fds[i], i);
		fcntl(CHILD_SOCK, F_SETFD, FD_CLOEXEC);
		if (a->cwd && enter_request_cwd(a->cwd, &e) < 0)
			child_fail(&e);
		run_c(ctx, a);
	}
	if (c < 0) {
		char m[200];
		int n = snprintf(m, sizeof(m), "E{\"code\":\"%s\",\"step\":\"clone3 (cached context)\",\"errno\":%d}",
				 ub_ctx_target_exited(ctx->pidfd) ? "E_INIT_EXITED" : "E_FORK", errno);
		send(sock, m, (size_t)n, MSG_NOSIGNAL);
		return 0;
	}
	PROF(prof_slot, PF_B_CLONE);
	if (ub_send_fds(sock, "P", 1, &pidfd, 1, 0) < 0)
		syscall(UB_NR_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
	close(pidfd);
	PROF(prof_slot, PF_B_SENT);
	if (check) {
		char why[200], msg[256];
		int n;

		if (check_context(ctx, why, sizeof(why))) {
			n = 1, msg[0] = 'K';
		} else {
			n = snprintf(msg, sizeof(msg), "S%s", why);
			rc = -1;
		}
		send(sock, msg, (size_t)n, MSG_NOSIGNAL);
		PROF(prof_slot, PF_B_CHECKED);
	}
	return rc;
}

/* T: serve requests from the control socket until it closes (the zygote
 * retired us, or is gone) or init's context changes.  When init exits, the
 * kernel kills us with the rest of its pid namespace. */
static void __attribute__((noreturn)) template_serve(struct ub_context *ctx)
{
	static char msgbuf[QMSG_MAX + 1];

	for (;;) {
		struct spawn_args a;
		int fds[4], nfds = 0, i, stale = 0, truncated;
		ssize_t n = ub_recv_fds(TMPL_CTL, msgbuf, sizeof(msgbuf), fds, 4, &nfds, 0, &truncated);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0);
		memset(&a, 0, sizeof(a));
		if (nfds == 4 && !truncated && qmsg_read(msgbuf, (size_t)n, &a) == 0)
			stale = t_spawn(ctx, &a, fds, 1) < 0;
		free(a.argv);
		free(a.envp);
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		if (stale)
			_exit(0); /* the zygote retries that request cold and forgets us */
	}
}

/* B' (template path): inside the pid namespace; forks T and exits, so that
 * T is re-parented to the container's init.  T waits for that, serves the
 * first request, checks that the context is cacheable (the cgroups it is in,
 * seen from inside, are init's; check_context passes), then tells the zygote
 * ('T', the fields, its pidfd) and serves the rest. */
static void __attribute__((noreturn)) run_template(struct ub_context *ctx, const struct spawn_args *a, const char *fields)
{
	char why[200], msg[MSG_MAX];
	int i, n, self;
	pid_t t = fork();

	if (t < 0)
		child_fail_errno(ub_ctx_target_exited(ctx->pidfd) ? "E_INIT_EXITED" : "E_FORK", "fork (template)", errno);
	if (t > 0)
		_exit(0); /* B' */
	in_template = 1;
	/* T: wait until B' is gone and init is our parent (then CLONE_PARENT makes init's children) */
	for (i = 0; getppid() != 1; i++) {
		int pfd = (int)syscall(UB_NR_pidfd_open, getppid(), 0);
		struct pollfd p = { pfd, POLLIN, 0 };

		if (i == 100)
			child_fail_errno("E_FORK", "template: not re-parented to init", ETIMEDOUT);
		if (pfd >= 0) {
			poll(&p, 1, 10);
			close(pfd);
		}
	}
	if (t_spawn(ctx, a, NULL, 0) < 0)
		_exit(0);
	for (i = 0; i < 4; i++)
		dup2(TMPL_CTL, i); /* let go of the first request's pipes and socket */
	prctl(PR_SET_NAME, "upcall-context", 0, 0, 0);
	if (zargc > 0) { /* /proc/<T>/cmdline, seen from inside: no host path */
		char *end = zargv[zargc - 1] + strlen(zargv[zargc - 1]);
		memset(zargv[0], 0, (size_t)(end - zargv[0]));
		snprintf(zargv[0], (size_t)(end - zargv[0]) + 1, "upcall-context");
	}
	if (ub_read_small_at(hostproc, "self/cgroup", snap.cgroup, sizeof(snap.cgroup)) < 0 || !check_context(ctx, why, sizeof(why)))
		_exit(0); /* not cacheable: the zygote sees EOF and forgets us */
	close(hostproc);
	hostproc = -1;
	self = (int)syscall(UB_NR_pidfd_open, getpid(), 0);
	n = snprintf(msg, sizeof(msg), "T%s", fields);
	if (self < 0 || n >= (int)sizeof(msg))
		_exit(0);
	if (ub_send_fds(TMPL_CTL, msg, (size_t)n, &self, 1, 0) < 0)
		_exit(0);
	close(self);
	template_serve(ctx);
}

static void free_args(struct spawn_args *a);

/* Dead frames below ours: what earlier, deeper calls left on the stack. */
static void __attribute__((noinline)) scrub_stack(void)
{
	char pad[256 << 10];

	explicit_bzero(pad, sizeof(pad));
	__asm__ volatile("" : : "r"(pad) : "memory");
}

/* In A, first thing after the fork: all the zygote held that is not this
 * request's -- other requests (argv, env, cwd, stdin, output, fields), frames
 * read and events not yet written, the templates' fields, the I/O buffers,
 * dead stack -- is zeroed (and freed).  A, its template and everything they
 * fork (B, C: an upcall, a builtin that runs inside) keep only this request. */
static void scrub_foreign(const struct spawn_args *own)
{
	size_t i;

	for (i = 0; i < UB_ZYGOTE_MAX_INFLIGHT; i++) {
		struct req *r = &reqs[i];

		if (&r->a == own)
			continue;
		if (r->used) {
			free_args(&r->a);
			ub_buf_free(&r->out.data);
			ub_buf_free(&r->err.data);
			ub_free_zeroed(r->fields);
			ub_free_zeroed(r->error);
		}
		explicit_bzero(r, sizeof(*r));
	}
	for (i = 0; i < TEMPLATE_SLOTS; i++) {
		ub_free_zeroed(tmpls[i].fields);
		explicit_bzero(&tmpls[i], sizeof(tmpls[i]));
	}
	ub_buf_free(&inbuf);
	ub_buf_free(&outq);
	explicit_bzero(stdin_tmp, sizeof(stdin_tmp));
	explicit_bzero(stream_tmp, sizeof(stream_tmp));
	explicit_bzero(qmsg_out, sizeof(qmsg_out));
	scrub_stack();
}

/* A: outside.  Opens and captures the context, applies it, enters, reports the
 * fields ('R'), then forks B for this request (cold), or B' for a template
 * (ctl >= 0) that serves this request and later ones of the same init. */
static void __attribute__((noreturn)) run_a(const struct spawn_args *a, int in, int out, int err, int sock, int ctl)
{
	struct ub_context ctx;
	struct ub_ctx_error e;
	char msg[MSG_MAX];
	const char *what;
	pid_t b;
	int st, n, tmpl = ctl >= 0;

	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 || dup2(sock, CHILD_SOCK) < 0 ||
	    (tmpl && dup2(ctl, TMPL_CTL) < 0))
		_exit(UB_EXIT_SPAWNER);
	/* nothing of the zygote: other requests' pipes, its own stdin/stdout */
	syscall(UB_NR_close_range, tmpl ? TMPL_CTL + 1 : CHILD_SOCK + 1, ~0U, 0);
	fcntl(CHILD_SOCK, F_SETFD, FD_CLOEXEC);
	if (tmpl)
		fcntl(TMPL_CTL, F_SETFD, FD_CLOEXEC);
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() != zygote_pid)
		_exit(UB_EXIT_SPAWNER);
	default_signals();
	scrub_foreign(a);

	PROF(prof_slot, PF_A_START);
	ub_ctx_init(&ctx);
	if (ub_ctx_open(&ctx, &a->target, &e) < 0)
		child_fail(&e);
	PROF(prof_slot, PF_A_OPEN);
	/* before the capture: any later change shows as a difference */
	if (tmpl && ctx.host)
		tmpl = 0; /* no template for host requests: it would live in the host's pid namespace */
	if (tmpl) {
		memset(&snap, 0, sizeof(snap));
		hostproc = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (hostproc < 0 || ub_ctx_snapshot_read(&ctx, target_vpid(ctx.pidfd), &snap, &what) < 0)
			tmpl = 0; /* serve this request, cache nothing */
	}
	if (!tmpl && ctl >= 0)
		close(TMPL_CTL); /* the zygote sees EOF at once */
	if (ub_ctx_capture(&ctx, &e) < 0)
		child_fail(&e);
	PROF(prof_slot, PF_A_CAPTURE);
	if (ub_ctx_apply_outside(&ctx, &e) < 0)
		child_fail(&e);
	PROF(prof_slot, PF_A_OUTSIDE);
	/* init's own cwd: a request's cwd is entered by whoever forks C */
	if (ub_ctx_enter(&ctx, NULL, &e) < 0)
		child_fail(&e);
	PROF(prof_slot, PF_A_ENTER);
	msg[0] = 'R';
	ub_ctx_fields_json(&ctx, msg + 1, sizeof(msg) - 1);
	n = (int)strlen(msg);
	if (send(CHILD_SOCK, msg, (size_t)n, MSG_NOSIGNAL) != n)
		_exit(UB_EXIT_SPAWNER);

	/* setns(CLONE_NEWPID) applies to children only: B is inside */
	b = fork();
	if (b < 0)
		child_fail_errno(ub_ctx_target_exited(ctx.pidfd) ? "E_INIT_EXITED" : "E_FORK", "fork", errno);
	if (b == 0) {
		/* a template needs the target to be its pid namespace's init (P0's init is):
		 * T waits to be re-parented to pid 1 */
		if (tmpl && target_vpid(ctx.pidfd) == 1)
			run_template(&ctx, a, msg + 1);
		if (tmpl)
			close(TMPL_CTL); /* not one: the zygote sees EOF and forgets it */
		run_b(&ctx, a);
	}
	PROF(prof_slot, PF_A_FORK_B);
	while (waitpid(b, &st, 0) < 0 && errno == EINTR)
		;
	_exit(0);
}

/* ------------------------------------------------------------------------
 * requests: parsing (the document is validated by ub_json_validate first;
 * the walk and the decoding are basic/json.c's)
 */

static void free_args(struct spawn_args *a)
{
	char **p;

	for (p = a->argv; p && *p; p++)
		ub_free_zeroed(*p);
	for (p = a->envp; p && *p; p++)
		ub_free_zeroed(*p);
	free(a->argv);
	free(a->envp);
	ub_free_zeroed(a->cwd);
	ub_free_zeroed(a->input);
	memset(a, 0, sizeof(*a));
}

static int parse_argv(struct ub_json_span v, struct spawn_args *a, const char **why)
{
	struct ub_json_iter it;
	struct ub_json_span k, s;
	size_t n = 0;

	if (*v.p != '[')
		return *why = "argv must be an array of strings", -1;
	a->argv = calloc(UB_ZYGOTE_MAX_ARGS + 1, sizeof(char *));
	if (!a->argv)
		return *why = "out of memory", -1;
	ub_json_iter_begin(&it, v);
	while (ub_json_iter_next(&it, &k, &s) > 0) {
		if (n == UB_ZYGOTE_MAX_ARGS)
			return *why = "argv has more than 256 entries", -1;
		if (ub_json_string(s, &a->argv[n]) < 0)
			return *why = "argv must be an array of strings", -1;
		n++;
	}
	return 0;
}

static int parse_env(struct ub_json_span v, struct spawn_args *a, const char **why)
{
	struct ub_json_iter it;
	struct ub_json_span k, s;
	size_t n = 0;

	if (*v.p != '{')
		return *why = "env must be an object of strings", -1;
	a->envp = calloc(UB_ZYGOTE_MAX_ARGS + 1, sizeof(char *));
	if (!a->envp)
		return *why = "out of memory", -1;
	ub_json_iter_begin(&it, v);
	while (ub_json_iter_next(&it, &k, &s) > 0) {
		char *name = NULL, *value = NULL;
		int bad;

		if (n == UB_ZYGOTE_MAX_ARGS)
			return *why = "env has more than 256 entries", -1;
		bad = ub_json_string(k, &name) < 0 || ub_json_string(s, &value) < 0 || !*name || strchr(name, '=');
		if (!bad) { /* not asprintf: its growing buffer would be freed unzeroed */
			size_t nl = strlen(name), vl = strlen(value);

			a->envp[n] = malloc(nl + vl + 2);
			if (a->envp[n]) {
				memcpy(a->envp[n], name, nl);
				a->envp[n][nl] = '=';
				memcpy(a->envp[n] + nl + 1, value, vl + 1);
			}
			bad = !a->envp[n];
		}
		if (!bad && strcmp(name, "PATH") == 0)
			a->path = a->envp[n] + 5;
		ub_free_zeroed(name);
		ub_free_zeroed(value);
		if (bad)
			return *why = "env must map names (without '=') to strings", -1;
		n++;
	}
	return 0;
}

static int parse_input(struct ub_json_span v, struct spawn_args *a, const char **why)
{
	char *text = NULL;
	long n;

	if (ub_json_string(v, &text) < 0)
		return *why = "stdinBase64 must be a string", -1;
	a->input = malloc(strlen(text) / 4 * 3 + 1);
	n = a->input ? ub_base64_decode(text, strlen(text), a->input) : -1;
	ub_free_zeroed(text);
	if (n < 0)
		return *why = "stdinBase64 is not valid base64", -1;
	a->input_len = (size_t)n;
	return 0;
}

enum key { K_ID, K_OP, K_PID, K_START, K_PIDNS, K_HOST, K_MODE, K_BUILTIN, K_ARGV, K_ENV, K_CWD,
	   K_STDIN, K_TIMEOUT, K_CAP, K_STREAM, K_DATA, K_EOF, K_STARTED, K_COUNT };
static const char *const key_names[K_COUNT] = {
	"id", "op", "initPid", "initStartTime", "pidns", "host", "mode", "builtin", "argv", "env", "cwd",
	"stdinBase64", "timeoutMs", "outputCap", "stream", "dataBase64", "eof", "startedEvent",
};

static int collect_members(const char *body, size_t len, struct ub_json_span v[K_COUNT], const char **why)
{
	struct ub_json_iter it;
	struct ub_json_span whole = { body, len }, k, val;

	while (whole.len && strchr(" \t\r\n", *whole.p)) /* validated: never the whole body */
		whole.p++, whole.len--;
	if (!whole.len || *whole.p != '{')
		return *why = "a request is a JSON object", -1;
	ub_json_iter_begin(&it, whole);
	while (ub_json_iter_next(&it, &k, &val) > 0) {
		char *name = NULL;
		int i;

		if (ub_json_string(k, &name) < 0)
			return *why = "bad member name", -1;
		for (i = 0; i < K_COUNT && strcmp(name, key_names[i]) != 0; i++)
			;
		free(name);
		if (i == K_COUNT)
			return *why = "unknown member", -1;
		if (v[i].p)
			return *why = "duplicate member", -1;
		v[i] = val;
	}
	return 0;
}

static int parse_request(struct ub_json_span v[K_COUNT], struct spawn_args *a, const char **why)
{
	unsigned long long x;

	if (v[K_DATA].p || v[K_EOF].p)
		return *why = "dataBase64 and eof are for op \"stdin\"", -1;
	if (!v[K_PID].p || ub_json_uint(v[K_PID], INT_MAX, &x) < 0 || x == 0)
		return *why = "initPid must be a positive integer", -1;
	a->target.pid = (pid_t)x;
	a->target.pidfd = -1;
	if (!v[K_START].p || ub_json_uint(v[K_START], 1ULL << 53, &a->target.start_time) < 0 || !a->target.start_time)
		return *why = "initStartTime must be a positive integer", -1;
	if (!v[K_PIDNS].p || ub_json_uint(v[K_PIDNS], 1ULL << 53, &a->target.pidns_ino) < 0 || !a->target.pidns_ino)
		return *why = "pidns must be a positive integer", -1;
	if (v[K_HOST].p && !ub_json_is(v[K_HOST], "true") && !ub_json_is(v[K_HOST], "false"))
		return *why = "host must be a boolean", -1;
	a->target.host = v[K_HOST].p && ub_json_is(v[K_HOST], "true");
	if (!v[K_MODE].p || (!ub_json_is(v[K_MODE], "\"exec\"") && !ub_json_is(v[K_MODE], "\"builtin\"")))
		return *why = "mode must be \"exec\" or \"builtin\"", -1;
	if (ub_json_is(v[K_MODE], "\"builtin\"")) {
		if (v[K_BUILTIN].p && ub_json_is(v[K_BUILTIN], "\"echo-context\""))
			a->builtin = BUILTIN_ECHO_CONTEXT;
		else if (v[K_BUILTIN].p && ub_json_is(v[K_BUILTIN], "\"netrelay\""))
			a->builtin = BUILTIN_NETRELAY;
		else
			return *why = "unknown builtin (known: echo-context, netrelay)", -1;
	} else if (v[K_BUILTIN].p) {
		return *why = "builtin is for mode \"builtin\"", -1;
	}
	if (v[K_STREAM].p && !ub_json_is(v[K_STREAM], "true") && !ub_json_is(v[K_STREAM], "false"))
		return *why = "stream must be a boolean", -1;
	a->stream = v[K_STREAM].p && ub_json_is(v[K_STREAM], "true");
	if (v[K_ARGV].p && parse_argv(v[K_ARGV], a, why) < 0)
		return -1;
	if (!a->builtin && (!a->argv || !a->argv[0]))
		return *why = "argv must be a non-empty array of strings", -1;
	if (v[K_ENV].p ? parse_env(v[K_ENV], a, why) < 0 : 0)
		return -1;
	if (!a->envp) {
		a->envp = calloc(2, sizeof(char *));
		if (!a->envp || !(a->envp[0] = strdup("PATH=" UB_CTX_DEFAULT_PATH)))
			return *why = "out of memory", -1;
		a->path = a->envp[0] + 5;
	}
	if (v[K_CWD].p && (ub_json_string(v[K_CWD], &a->cwd) < 0 || a->cwd[0] != '/'))
		return *why = "cwd must be an absolute path", -1;
	if (v[K_STDIN].p && parse_input(v[K_STDIN], a, why) < 0)
		return -1;
	if (!v[K_TIMEOUT].p || ub_json_uint(v[K_TIMEOUT], UB_ZYGOTE_MAX_TIMEOUT_MS, &x) < 0 || x == 0)
		return *why = "timeoutMs must be an integer in 1..3600000", -1;
	a->timeout_ms = (long long)x;
	x = UB_ZYGOTE_DEFAULT_OUTPUT_CAP;
	if (v[K_CAP].p && ub_json_uint(v[K_CAP], UB_ZYGOTE_MAX_OUTPUT_CAP, &x) < 0)
		return *why = "outputCap must be an integer in 0..8388608", -1;
	a->output_cap = (size_t)x;
	return 0;
}

/* ------------------------------------------------------------------------
 * templates (the context cache), in the zygote
 */

static void own_rlimits(struct rlimit *rl)
{
	int r;

	for (r = 0; r < RLIM_NLIMITS; r++)
		getrlimit(r, &rl[r]);
}

static void forget_template(struct tmpl *t);

/* Stop giving it requests; it exits once it has read the ones it has (EOF). */
static void retire(struct tmpl *t, int kill_it)
{
	t->live = 0;
	ub_close_fd(&t->ctl);
	if (kill_it && t->pidfd >= 0)
		syscall(UB_NR_pidfd_send_signal, t->pidfd, SIGKILL, NULL, 0);
	if (t->pidfd < 0)
		forget_template(t); /* never got ready: nothing to watch */
}

/* T has exited (or never got ready): forget it.  T is the container init's
 * child, not ours: nothing to reap here. */
static void forget_template(struct tmpl *t)
{
	size_t i;

	for (i = 0; i < UB_ZYGOTE_MAX_INFLIGHT; i++)
		if (reqs[i].used && reqs[i].tmpl == t) {
			if (!reqs[i].fields && t->fields)
				reqs[i].fields = strdup(t->fields);
			reqs[i].tmpl = NULL;
		}
	ub_close_fd(&t->pidfd);
	ub_close_fd(&t->ctl);
	ub_free_zeroed(t->fields);
	memset(t, 0, sizeof(*t));
	t->pidfd = t->ctl = -1;
}

/* A live template for this request's init that is still young enough, and
 * whose base (our rlimits) has not moved. */
static struct tmpl *find_template(const struct spawn_args *a, long long now)
{
	size_t i;

	for (i = 0; i < TEMPLATE_SLOTS; i++) {
		struct tmpl *t = &tmpls[i];
		struct rlimit ours[RLIM_NLIMITS];

		if (!t->live || t->init_pid != a->target.pid || t->start_time != a->target.start_time ||
		    t->pidns_ino != a->target.pidns_ino || t->host != a->target.host)
			continue;
		own_rlimits(ours);
		if (now - t->created > opt_ttl_ms || memcmp(ours, t->rlim, sizeof(ours)) != 0) {
			retire(t, 0);
			continue;
		}
		return t;
	}
	return NULL;
}

static int pending_template(const struct spawn_args *a)
{
	size_t i;

	for (i = 0; i < TEMPLATE_SLOTS; i++)
		if (tmpls[i].live && !tmpls[i].fields && tmpls[i].init_pid == a->target.pid &&
		    tmpls[i].start_time == a->target.start_time && tmpls[i].pidns_ino == a->target.pidns_ino)
			return 1;
	return 0;
}

/* A slot for a new template: a free one, after retiring the least recently
 * used live one when --max-contexts are live. */
static struct tmpl *new_template(long long now)
{
	struct tmpl *lru = NULL, *free_slot_ = NULL;
	size_t i;
	int live = 0;

	for (i = 0; i < TEMPLATE_SLOTS; i++) {
		struct tmpl *t = &tmpls[i];

		if (!t->used) {
			if (!free_slot_)
				free_slot_ = t;
			continue;
		}
		if (!t->live)
			continue;
		live++;
		if (!lru || t->last_used < lru->last_used)
			lru = t;
	}
	if (live >= opt_max_templates && lru)
		retire(lru, 0);
	if (!free_slot_)
		return NULL;
	memset(free_slot_, 0, sizeof(*free_slot_));
	free_slot_->pidfd = free_slot_->ctl = -1;
	free_slot_->created = free_slot_->last_used = now;
	return free_slot_;
}

/* 'T' + fields, with T's pidfd: ready.  EOF: it gave up (not cacheable). */
static void on_template_ctl(struct tmpl *t)
{
	char data[MSG_MAX];
	int fd = -1, nfds;
	ssize_t n = ub_recv_fds(t->ctl, data, sizeof(data) - 1, &fd, 1, &nfds, MSG_DONTWAIT, NULL);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (nfds == 0)
		fd = -1;
	if (n > 1 && data[0] == 'T' && fd >= 0 && t->pidfd < 0 && !t->fields && ub_json_validate(data + 1, (size_t)n - 1) == 0) {
		t->fields = strndup(data + 1, (size_t)n - 1);
		t->pidfd = fd;
		return;
	}
	if (fd >= 0)
		close(fd);
	retire(t, n > 0);
}

/* ------------------------------------------------------------------------
 * request lifecycle in the zygote
 */

/*
 * A descendant that called setsid(2) has left the process group C leads, so
 * the group kill misses it. While it is still in C's tree, /proc's children
 * lists (every thread's) find it. They are pinned by pidfd first and signalled
 * after C and its group, so C dies of our SIGKILL (not of its children's exit).
 * A number read from a list is pinned only if, after the pidfd_open, its
 * parent is still the process that list belongs to (ub_pidfd_open_child: the
 * parent's pidfd, C's or a pinned one, alive after the child's ppid was read),
 * so a pid reused between the read and the open is never hit. A descendant
 * whose parent already exited was re-parented to the container's init and is
 * out of reach (the limit docs/security.md states).
 */
#define MAX_PINNED 256

static void pin_descendants(pid_t pid, int pidfd, int depth, int *pinned, size_t *n)
{
	char path[64];
	if (depth > 64)
		return;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *tasks = opendir(path);
	if (!tasks)
		return;
	struct dirent *t;
	while ((t = readdir(tasks)) != NULL && *n < MAX_PINNED) {
		if (t->d_name[0] < '0' || t->d_name[0] > '9')
			continue;
		char cpath[320], buf[4096];
		snprintf(cpath, sizeof(cpath), "/proc/%d/task/%s/children", (int)pid, t->d_name);
		int fd = open(cpath, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		char *save = NULL;
		for (char *tok = strtok_r(buf, " \n", &save); tok && *n < MAX_PINNED; tok = strtok_r(NULL, " \n", &save)) {
			pid_t child = (pid_t)strtol(tok, NULL, 10);
			int cfd = ub_pidfd_open_child(child, pid, pidfd);
			if (cfd < 0)
				continue;
			pinned[(*n)++] = cfd;
			pin_descendants(child, cfd, depth + 1, pinned, n);
		}
	}
	closedir(tasks);
}

static void kill_tree(struct req *r)
{
	int pinned[MAX_PINNED];
	size_t npinned = 0;
	if (r->cpid > 0 && !r->c_exited && r->cpidfd >= 0)
		pin_descendants(r->cpid, r->cpidfd, 0, pinned, &npinned);
	if (r->cpidfd >= 0) {
		/* the whole process group C leads (setsid), race-free through the pidfd */
		if (syscall(UB_NR_pidfd_send_signal, r->cpidfd, SIGKILL, NULL, UB_PIDFD_SIGNAL_PROCESS_GROUP) < 0 &&
		    errno == EINVAL && !r->c_exited && r->cpid > 0)
			kill(-r->cpid, SIGKILL); /* before 6.9; C is unreaped, so the number is still its */
		syscall(UB_NR_pidfd_send_signal, r->cpidfd, SIGKILL, NULL, 0);
	}
	for (size_t i = 0; i < npinned; i++) {
		syscall(UB_NR_pidfd_send_signal, pinned[i], SIGKILL, NULL, 0);
		close(pinned[i]);
	}
	if (r->bpidfd >= 0 && !r->b_exited)
		syscall(UB_NR_pidfd_send_signal, r->bpidfd, SIGKILL, NULL, 0);
	if (r->apidfd >= 0 && !r->a_reaped)
		syscall(UB_NR_pidfd_send_signal, r->apidfd, SIGKILL, NULL, 0);
}

static void reset_req(struct req *r)
{
	memset(r, 0, sizeof(*r));
	r->sock = r->in_fd = r->out.fd = r->err.fd = r->cpidfd = r->apidfd = r->bpidfd = -1;
}

/* Everything of one attempt at spawning (the fds, what the children said),
 * not the request itself: for a retry on the cold path. */
/* The pipes, the socket, C's and B's pidfds and the output so far. */
static void release_io(struct req *r)
{
	ub_close_fd(&r->sock); /* a C still waiting for 'G' reads EOF and exits */
	ub_close_fd(&r->in_fd);
	ub_close_fd(&r->out.fd);
	ub_close_fd(&r->err.fd);
	ub_close_fd(&r->cpidfd);
	ub_close_fd(&r->bpidfd);
	ub_buf_free(&r->out.data);
	ub_buf_free(&r->err.data);
}

static void drop_attempt(struct req *r)
{
	release_io(r);
	ub_free_zeroed(r->fields);
	ub_free_zeroed(r->error);
	r->fields = r->error = NULL;
	r->out.truncated = r->err.truncated = 0;
	r->cpid = 0;
	r->got_r = r->b_exited = r->c_exited = r->have_status = r->stale = r->checked = 0;
	r->cpid_at_ns = 0;
	r->in_off = 0;
	r->tmpl = NULL;
	r->via_tmpl = r->becomes_tmpl = 0;
}

static void free_req(struct req *r)
{
	drop_attempt(r);
	ub_close_fd(&r->apidfd);
	free_args(&r->a);
	reset_req(r);
}

/* After the event: release everything but A's pidfd, which waits to be reaped. */
static void finish(struct req *r)
{
	r->emitted = 1;
	release_io(r);
	if (r->a_reaped)
		free_req(r);
}

static int nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Hand the request to a template: the args and the child ends of its fds. */
static int send_to_template(struct tmpl *t, struct req *r, const int fds[4])
{
	char *msgbuf = qmsg_out;
	int size = qmsg_size(&r->a);

	if (size < 0 || t->ctl < 0)
		return -1;
	qmsg_write(&r->a, (uint32_t)(r - reqs), msgbuf);
	if (ub_send_fds(t->ctl, msgbuf, (size_t)size, fds, 4, MSG_DONTWAIT) < 0) {
		int e = errno;

		explicit_bzero(msgbuf, (size_t)size);
		if (e != EAGAIN)
			retire(t, 1);
		return -1;
	}
	explicit_bzero(msgbuf, (size_t)size);
	return 0;
}

/* One attempt: through a live template, else cold (a new A, which becomes
 * the template when none is live or starting for this init). */
static int start_request(struct req *r, long long now, int allow_template)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, sv[2] = { -1, -1 }, ctl[2] = { -1, -1 }, e;
	struct tmpl *t = NULL;
	pid_t pid;

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		goto fail;
	/* a retry (retry_cold) is never queued to a template: it may give up too */
	if (opt_templates && allow_template && !r->retried && (t = find_template(&r->a, now)) != NULL) {
		int fds[4] = { in[0], out[1], err[1], sv[1] };

		if (send_to_template(t, r, fds) == 0) {
			t->last_used = now;
			t->uses++;
			r->tmpl = t;
			r->via_tmpl = 1;
			r->tmpl_created = t->created;
			r->a_reaped = 1; /* no A of its own */
			goto sent;
		}
		t = NULL;
	}
	/* never for a host request: its A serves it and exits (a template would
	 * live in the host's pid namespace), so requests queued to it meanwhile
	 * would be dropped with its control socket */
	if (opt_templates && allow_template && !r->a.target.host && !pending_template(&r->a) && qmsg_size(&r->a) >= 0 &&
	    (t = new_template(now)) != NULL) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0)
			t = NULL;
	}
#ifdef UB_ZYGOTE_PROFILE
	prof_slot = (int)(r - reqs);
#endif
	if (t)
		own_rlimits(t->rlim); /* before the fork: what A's degraded limits are based on */
	pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0)
		run_a(&r->a, in[0], out[1], err[1], sv[1], ctl[1]);
	PROF(r - reqs, PF_FORKED);
	if (t) {
		/* this request is served by A (and then by the template A starts) as a cold one */
		t->used = t->live = 1;
		t->ctl = ctl[0];
		ctl[0] = -1;
		ub_close_fd(&ctl[1]);
		nonblock(t->ctl);
		t->init_pid = r->a.target.pid;
		t->start_time = r->a.target.start_time;
		t->pidns_ino = r->a.target.pidns_ino;
		t->host = r->a.target.host;
		r->becomes_tmpl = 1;
	}
	r->apid = pid;
	r->apidfd = (int)syscall(UB_NR_pidfd_open, pid, 0); /* our unreaped child: cannot be reused */
sent:
	close(in[0]);
	close(out[1]);
	close(err[1]);
	close(sv[1]);
	r->in_fd = in[1];
	r->out.fd = out[0];
	r->err.fd = err[0];
	r->sock = sv[0];
	nonblock(r->in_fd);
	nonblock(r->out.fd);
	nonblock(r->err.fd);
	nonblock(r->sock);
	if (r->in_off >= r->a.input_len && (!r->a.stream || r->in_eof))
		ub_close_fd(&r->in_fd);
	return 0;
fail:
	e = errno;
	for (int i = 0; i < 2; i++) {
		ub_close_fd(&in[i]);
		ub_close_fd(&out[i]);
		ub_close_fd(&err[i]);
		ub_close_fd(&sv[i]);
		ub_close_fd(&ctl[i]);
	}
	if (t && !t->used)
		memset(t, 0, sizeof(*t)), t->pidfd = t->ctl = -1;
	errno = e;
	return -1;
}

/* A template attempt that came to nothing before C existed (stale context,
 * template gone, or an A that never became the template it was to be):
 * once more, on the cold path, which reports precisely (its A may become
 * the next template; the request is never queued to one again). */
static int retry_cold(struct req *r, long long now)
{
	if (r->retried || r->started || (r->cpidfd >= 0 && !r->stale) || r->timed_out || r->emitted || !r->via_tmpl)
		return 0;
	if (r->tmpl && r->tmpl->live && (r->stale || !r->becomes_tmpl))
		retire(r->tmpl, 0);
	r->retried = 1;
	drop_attempt(r);
	r->a_reaped = 0;
	if (start_request(r, now, 1) < 0) {
		emit_native_error(r, "E_FORK", "start spawner", errno);
		finish(r);
	}
	return 1;
}

static struct req *free_slot(void)
{
	size_t i;

	for (i = 0; i < UB_ZYGOTE_MAX_INFLIGHT; i++)
		if (!reqs[i].used)
			return &reqs[i];
	return NULL;
}

static struct req *find_req(unsigned long long id)
{
	size_t i;

	for (i = 0; i < UB_ZYGOTE_MAX_INFLIGHT; i++)
		if (reqs[i].used && !reqs[i].emitted && reqs[i].id == id)
			return &reqs[i];
	return NULL;
}

/* {"id":N,"op":"stdin","dataBase64":"...","eof":true}: more input for a
 * stream request; {"id":N,"op":"kill"}: kill it now.  An unknown id (the
 * request has ended) is ignored. */
static void handle_control(unsigned long long id, int kill_op, struct ub_json_span v[K_COUNT])
{
	struct req *r = find_req(id);
	char *text = NULL;

	if (!r)
		return;
	if (kill_op) {
		r->killed = 1;
		r->deadline = ub_now_ms();
		ub_close_fd(&r->in_fd);
		return;
	}
	if (v[K_DATA].p && ub_json_string(v[K_DATA], &text) == 0 && r->in_fd >= 0 && !r->in_eof) {
		size_t room = strlen(text) / 4 * 3 + 3;
		unsigned char *p;
		long n;

		if (r->started && r->in_off == r->a.input_len) {
			/* all written (and a retry is no longer possible): start over */
			if (r->a.input)
				explicit_bzero(r->a.input, r->a.input_len);
			r->in_off = r->a.input_len = 0;
		}
		p = malloc(r->a.input_len + room); /* moved by hand, as buf_append */
		if (p) {
			if (r->a.input_len)
				memcpy(p, r->a.input, r->a.input_len);
			ub_free_zeroed(r->a.input);
			r->a.input = p;
			n = ub_base64_decode(text, strlen(text), p + r->a.input_len);
			if (n > 0)
				r->a.input_len += (size_t)n;
		}
	}
	ub_free_zeroed(text);
	if (v[K_EOF].p && ub_json_is(v[K_EOF], "true")) {
		r->in_eof = 1;
		if (r->in_fd >= 0 && r->in_off >= r->a.input_len)
			ub_close_fd(&r->in_fd);
	}
}

static void handle_frame(const char *body, size_t len)
{
	unsigned long long id = 0;
	const char *why = "invalid JSON", *v;
	struct ub_json_span m[K_COUNT] = { { 0 } };
	struct req *r;
	size_t vlen;
	int have_id = 0;
	struct spawn_args a = { 0 };

	if (ub_json_validate(body, len) < 0) {
		emit_error_raw(0, 0, "E_BAD_REQUEST", "E_BAD_REQUEST", "parse request", EINVAL, why);
		return;
	}
	if (ub_json_find(body, len, "id", &v, &vlen) == 0 && ub_json_uint((struct ub_json_span){ v, vlen }, 1ULL << 53, &id) == 0)
		have_id = 1;
	if (!have_id) {
		emit_error_raw(0, 0, "E_BAD_REQUEST", "E_BAD_REQUEST", "parse request", EINVAL, "id must be an integer in 0..2^53");
		return;
	}
	if (collect_members(body, len, m, &why) < 0) {
		emit_error_raw(1, id, "E_BAD_REQUEST", "E_BAD_REQUEST", "parse request", EINVAL, why);
		return;
	}
	if (m[K_OP].p && (ub_json_is(m[K_OP], "\"" UB_ZYGOTE_OP_STDIN "\"") || ub_json_is(m[K_OP], "\"" UB_ZYGOTE_OP_KILL "\""))) {
		handle_control(id, ub_json_is(m[K_OP], "\"" UB_ZYGOTE_OP_KILL "\""), m);
		return;
	}
	if (!m[K_OP].p || !ub_json_is(m[K_OP], "\"" UB_ZYGOTE_OP_SPAWN "\"")) {
		emit_error_raw(1, id, "E_BAD_REQUEST", "E_BAD_REQUEST", "parse request", EINVAL,
			       "op must be \"spawn\", \"stdin\" or \"kill\"");
		return;
	}
	if (m[K_STARTED].p && !ub_json_is(m[K_STARTED], "true") && !ub_json_is(m[K_STARTED], "false")) {
		emit_error_raw(1, id, "E_BAD_REQUEST", "E_BAD_REQUEST", "parse request", EINVAL, "startedEvent must be a boolean");
		return;
	}
	if (parse_request(m, &a, &why) < 0) {
		free_args(&a);
		emit_error_raw(1, id, "E_BAD_REQUEST", "E_BAD_REQUEST", "parse request", EINVAL, why);
		return;
	}
	r = free_slot();
	if (!r) {
		free_args(&a);
		emit_error_raw(1, id, "E_BUSY", "E_BUSY", "accept request", EAGAIN, "too many upcalls in flight (512)");
		return;
	}
	r->used = 1;
	r->id = id;
	r->a = a;
	r->started_event = !m[K_STARTED].p || ub_json_is(m[K_STARTED], "true");
	PROF(r - reqs, PF_PARSED);
	r->deadline = ub_now_ms() + r->a.timeout_ms;
	if (start_request(r, ub_now_ms(), 1) < 0) {
		int e = errno;
		emit_native_error(r, "E_FORK", "start spawner", e);
		free_req(r);
	}
}

/* ------------------------------------------------------------------------
 * exit statuses before Linux 6.15: the proc connector
 *
 * Without PIDFD_INFO_EXIT a non-parent learns C's status only while C is a
 * zombie, and most inits reap at once.  The proc connector (cn_proc,
 * CONFIG_PROC_EVENTS; listening needs CAP_NET_ADMIN in the initial user and
 * pid namespaces) sends every task's exit with its wait() status, from
 * do_exit() right after exit_notify() (which wakes the pidfd): when C's
 * pidfd polls readable its event is queued here or about to be, so a missing
 * one is waited for, briefly (CN_WAIT_MS).  An event is taken for C only if it is newer than the
 * moment we learned C's pid: C was alive then and holds the pid until reaped.
 * An overflowing socket (ENOBUFS on a busy host) loses events: then field 52.
 */

static int cn_fd = -1;
#define CN_WAIT_MS 50 /* the exiting task sends it a few instructions after the wake-up; the loop waits meanwhile */

/* PIDFD_INFO_EXIT works here: a child of ours, reaped, still has a status. */
static int kernel_has_exit_info(void)
{
	struct pidfd_info_v0 info = { .mask = UB_PIDFD_INFO_EXIT };
	pid_t pid;
	int pidfd, ok;

	if (!ub_compat_has(UB_COMPAT_PIDFD_INFO))
		return 0;
	pid = fork();
	if (pid < 0)
		return 1; /* cannot tell: no listener */
	if (pid == 0)
		_exit(0);
	pidfd = (int)syscall(UB_NR_pidfd_open, pid, 0);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (pidfd < 0)
		return 1;
	ok = ioctl(pidfd, UB_PIDFD_GET_INFO, &info) == 0 && (info.mask & UB_PIDFD_INFO_EXIT);
	close(pidfd);
	return ok;
}

static void cn_open(void)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC };
	struct {
		struct nlmsghdr nl;
		struct cn_msg cn;
		uint32_t op;
	} __attribute__((packed)) msg;
	int fd, size = 8 << 20;

	if (kernel_has_exit_info())
		return;
	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_CONNECTOR);
	if (fd < 0)
		return;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	memset(&msg, 0, sizeof(msg));
	msg.nl.nlmsg_len = sizeof(msg);
	msg.nl.nlmsg_type = NLMSG_DONE;
	msg.cn.id.idx = CN_IDX_PROC;
	msg.cn.id.val = CN_VAL_PROC;
	msg.cn.len = sizeof(msg.op);
	msg.op = PROC_CN_MCAST_LISTEN;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || send(fd, &msg, sizeof(msg), 0) != (ssize_t)sizeof(msg)) {
		close(fd);
		return;
	}
	cn_fd = fd;
}

static void cn_record(pid_t pid, uint32_t status, long long ts)
{
	size_t i;

	for (i = 0; i < UB_ZYGOTE_MAX_INFLIGHT; i++) {
		struct req *r = &reqs[i];

		if (r->used && !r->emitted && !r->have_status && r->cpid == pid && r->cpid_at_ns && ts > r->cpid_at_ns) {
			r->status = (int)status;
			r->have_status = 1;
		}
	}
}

static void cn_drain(void)
{
	char buf[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
	ssize_t n;

	while (cn_fd >= 0 && ((n = recv(cn_fd, buf, sizeof(buf), 0)) > 0 || (n < 0 && errno == ENOBUFS))) {
		const struct nlmsghdr *h;
		int len = (int)n;

		if (n < 0)
			continue; /* overflowed: some events are lost */
		for (h = (const struct nlmsghdr *)buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
			const struct cn_msg *cn = NLMSG_DATA(h);
			const struct proc_event *ev = (const struct proc_event *)cn->data;

			if (cn->id.idx != CN_IDX_PROC || cn->len < sizeof(*ev) || ev->what != PROC_EVENT_EXIT)
				continue;
			/* the thread group leader's exit carries the process's status */
			if (ev->event_data.exit.process_pid == ev->event_data.exit.process_tgid)
				cn_record(ev->event_data.exit.process_pid, ev->event_data.exit.exit_code, (long long)ev->timestamp_ns);
		}
	}
}

/* C's exit status once init has reaped it: PIDFD_INFO_EXIT (Linux 6.15). */
static int reaped_status(int pidfd, int *status)
{
	struct pidfd_info_v0 info = { .mask = UB_PIDFD_INFO_EXIT };

	if (!ub_compat_has(UB_COMPAT_PIDFD_INFO) || ioctl(pidfd, UB_PIDFD_GET_INFO, &info) < 0 ||
	    !(info.mask & UB_PIDFD_INFO_EXIT))
		return 0;
	*status = info.exit_code;
	return 1;
}

/* The exit status of C once its pidfd polled readable.  Before 6.15 a status
 * is known only while C is a zombie: once init reaps it, it is lost (code
 * null; doctor reports PIDFD_GET_INFO degraded). */
static void read_status(struct req *r)
{
	int tries;

	cn_drain(); /* C's exit event, if a listener is open, is queued by now */
	for (tries = 0; tries < 3 && !r->have_status; tries++) {
		char path[64], stat[4096];
		unsigned long long code;

		if (reaped_status(r->cpidfd, &r->status)) {
			r->have_status = 1; /* reaped by init */
			return;
		}
		/* A zombie (init has not reaped it): its pid cannot be reused, so
		 * /proc/<pid>/stat is C's; field 52 is the exit code in wait() form.
		 * Asking the pidfd again afterwards proves it was still unreaped. */
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)r->cpid);
		/* still unreaped (its pidfd still names a pid): the file was C's */
		if (ub_read_small_at(AT_FDCWD, path, stat, sizeof(stat)) == 0 &&
		    ub_proc_stat_field(stat, strlen(stat), UB_STAT_EXIT_CODE, &code) == 0 && ub_pidfd_pid(r->cpidfd) > 0) {
			r->status = (int)code;
			r->have_status = 1;
			return;
		}
	}
	/* reaped at once: its exit event follows the pidfd's wake-up */
	for (tries = 0; cn_fd >= 0 && !r->have_status && tries < CN_WAIT_MS / 5; tries++) {
		struct pollfd p = { cn_fd, POLLIN, 0 };

		if (poll(&p, 1, 5) > 0)
			cn_drain();
	}
}

/* The fields of this request: the context's (from A, or from the template),
 * with the request's own cwd and builtin, and where the context came from. */
static char *request_fields(struct req *r)
{
	const char *base = r->fields ? r->fields : r->tmpl && r->tmpl->fields ? r->tmpl->fields : NULL;
	struct ub_json_span whole, k, val;
	struct ub_json_iter it;
	struct ub_buf out = { 0 };
	char tmp[400], esc[300];
	int first = 1;

	if (!base)
		return NULL;
	whole.p = base;
	whole.len = strlen(base);
	ub_json_iter_begin(&it, whole);
	ub_buf_append(&out, "{", 1);
	while (ub_json_iter_next(&it, &k, &val) > 0) {
		if (!first)
			ub_buf_append(&out, ",", 1);
		first = 0;
		ub_buf_append(&out, k.p, k.len);
		ub_buf_append(&out, ":", 1);
		if (ub_json_is(k, "\"cwd\"") && r->a.cwd) {
			ub_json_escape(esc, 0, 160, r->a.cwd);
			ub_buf_append(&out, tmp, (size_t)snprintf(tmp, sizeof(tmp), "\"request: %s\"", esc));
		} else if (ub_json_is(k, "\"dumpable\"") && r->a.builtin) {
			ub_buf_append(&out, "\"0 (builtin: no exec)\"", 22);
		} else {
			ub_buf_append(&out, val.p, val.len);
		}
	}
	if (r->via_tmpl)
		snprintf(tmp, sizeof(tmp), ",\"context\":\"cached: captured %lld ms ago, checked against init before this spawn\"}",
			 ub_now_ms() - r->tmpl_created);
	else
		snprintf(tmp, sizeof(tmp), ",\"context\":\"captured for this spawn%s\"}", r->retried ? " (the cached one was stale)" : "");
	ub_buf_append(&out, tmp, strlen(tmp));
	return out.p;
}

/* Is the request's init gone (its pid freed, or now another process's)? */
static int init_gone(const struct req *r)
{
	char path[64], st[1024];
	unsigned long long start;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)r->a.target.pid);
	if (ub_read_small_at(AT_FDCWD, path, st, sizeof(st)) < 0 || ub_proc_start_time(st, &start) < 0)
		return 1;
	return r->a.target.start_time && start != r->a.target.start_time;
}

static void maybe_start(struct req *r)
{
	char json[200], *f;
	long ppid = 0;

	/* Before 6.15 the status of a C that died before its go (killed with its
	 * pid namespace as init died) is lost: it never ran, so say why, as the
	 * cold path would have, instead of an exit without a status. */
	if (!r->started && !r->error && r->cpidfd >= 0 && !ub_compat_has(UB_COMPAT_PIDFD_INFO) &&
	    ub_ctx_target_exited(r->cpidfd) && !r->have_status) {
		r->error = strdup(init_gone(r) ? "{\"code\":\"E_INIT_EXITED\",\"step\":\"the upcall was killed before it started: init exited\",\"errno\":3}"
					   : "{\"code\":\"E_SPAWN\",\"step\":\"the upcall was killed before it started\",\"errno\":3}");
		return;
	}

	if (r->started || r->cpidfd < 0 || !r->b_exited || (r->via_tmpl && !r->checked) || r->stale || r->error || r->timed_out ||
	    r->emitted)
		return;
	f = request_fields(r);
	if (!f)
		return; /* the template has not said it is ready yet */
	ub_free_zeroed(r->fields);
	r->fields = f;
	r->got_r = 1;
	r->started = 1;
	PROF(r - reqs, PF_Z_STARTED);
	if (r->started_event) {
		/* while C waits for 'G' its pid is surely its own: the start time that
		 * lets the broker tell C from a later process with the same pid */
		char path[64], st[1024], start[24] = "";
		unsigned long long v;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)r->cpid);
		if (ub_read_small_at(AT_FDCWD, path, st, sizeof(st)) == 0) {
			/* field 4, ppid: init's once B has exited; with PIDFD_GET_INFO's
			 * ppid this was the same read, and it exists before 6.13 */
			if (ub_proc_stat_field(st, strlen(st), UB_STAT_PPID, &v) == 0)
				ppid = (long)v;
			if (ub_proc_stat_field(st, strlen(st), UB_STAT_START_TIME, &v) == 0)
				snprintf(start, sizeof(start), "%llu", v);
		}
		emit(json, snprintf(json, sizeof(json), "{\"id\":%llu,\"event\":\"" UB_ZYGOTE_EVENT_STARTED "\",\"pid\":%d,\"ppid\":%d%s%s%s}", r->id,
				    (int)r->cpid, (int)ppid, *start ? ",\"startTime\":\"" : "", start, *start ? "\"" : ""));
	}
	send(r->sock, "G", 1, MSG_NOSIGNAL);
}

static void on_message(struct req *r, const char *msg, size_t n, const int *fds, int nfds)
{
	pid_t cpid;
	int i;

	if (n >= 1 && msg[0] == 'P' && (nfds == 1 || nfds == 2) && r->cpidfd < 0) {
		/* from B: C's and B's pidfds (C is init's once B is gone); from a
		 * template: C's only (cloned with CLONE_PARENT: init's already) */
		r->cpidfd = fds[0];
		r->bpidfd = nfds == 2 ? fds[1] : -1;
		r->b_exited = nfds == 1 || ub_ctx_target_exited(r->bpidfd); /* often gone already */
		PROF(r - reqs, PF_Z_GOT_P);
		cpid = ub_pidfd_pid(r->cpidfd);
		if (cpid > 0) {
			r->cpid = cpid; /* C waits for 'G': alive, so the pid is known */
			r->cpid_at_ns = ub_now_ns();
		}
		if (r->timed_out || r->emitted)
			kill_tree(r);
		return;
	}
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	if (n >= 1 && msg[0] == 'R' && !r->fields && ub_json_validate(msg + 1, n - 1) == 0) {
		r->fields = strndup(msg + 1, n - 1);
	} else if (n >= 1 && msg[0] == 'E' && !r->error && ub_json_validate(msg + 1, n - 1) == 0) {
		r->error = strndup(msg + 1, n - 1);
	} else if (n >= 1 && msg[0] == 'K') {
		r->checked = 1; /* the template found init's context unchanged */
	} else if (n >= 1 && msg[0] == 'S') {
		r->stale = 1; /* it changed: C never gets 'G'; the request goes cold */
		if (r->cpidfd >= 0 && !r->c_exited)
			syscall(UB_NR_pidfd_send_signal, r->cpidfd, SIGKILL, NULL, 0);
	}
}

static void on_sock(struct req *r)
{
	for (;;) {
		char data[MSG_MAX];
		int fds[4], nfds = 0;
		ssize_t n = ub_recv_fds(r->sock, data, sizeof(data), fds, 4, &nfds, MSG_DONTWAIT, NULL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			ub_close_fd(&r->sock); /* A, B and C all closed their end */
			break;
		}
		on_message(r, data, (size_t)n, fds, nfds);
	}
	maybe_start(r);
}

/* Output beyond the cap is read and dropped, so the program never blocks on
 * a full pipe; the event says "truncated".  A stream request's stdout goes
 * out as it comes, one "stdout" event per read. */
static void on_stream(struct req *r, struct stream *s, size_t cap)
{
	char *tmp = stream_tmp;
	int rounds;

	for (rounds = 0; rounds < 16; rounds++) {
		ssize_t n = read(s->fd, tmp, sizeof(stream_tmp));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			ub_close_fd(&s->fd);
			return;
		}
		if (r->a.stream && s == &r->out) {
			char *b64 = malloc(ub_base64_encoded_len((size_t)n) + 64);
			int k;

			if (!b64) {
				fputs("upcall-zygote: out of memory\n", stderr);
				exit(UB_EXIT_SPAWNER);
			}
			k = snprintf(b64, 64, "{\"id\":%llu,\"event\":\"" UB_ZYGOTE_EVENT_STDOUT "\",\"dataBase64\":\"", r->id);
			ub_base64_encode((const unsigned char *)tmp, (size_t)n, b64 + k);
			k += (int)strlen(b64 + k);
			memcpy(b64 + k, "\"}", 3);
			emit(b64, (size_t)k + 2);
			ub_free_zeroed(b64);
			continue;
		}
		if (s->data.len < cap) {
			size_t take = (size_t)n < cap - s->data.len ? (size_t)n : cap - s->data.len;
			if (ub_buf_append(&s->data, tmp, take) < 0)
				take = 0;
			if (take < (size_t)n)
				s->truncated = 1;
		} else {
			s->truncated = 1;
		}
	}
}

static void on_stdin_pipe(struct req *r)
{
	ssize_t n = write(r->in_fd, r->a.input + r->in_off, r->a.input_len - r->in_off);

	if (n > 0)
		r->in_off += (size_t)n;
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		ub_close_fd(&r->in_fd); /* the program closed its stdin (EPIPE) */
	else if (r->in_off >= r->a.input_len && (!r->a.stream || r->in_eof))
		ub_close_fd(&r->in_fd); /* done */
}

static void on_a_exit(struct req *r)
{
	int st;
	pid_t p = waitpid(r->apid, &st, WNOHANG);

	if (p == r->apid || (p < 0 && errno == ECHILD)) {
		r->a_reaped = 1;
		ub_close_fd(&r->apidfd);
	}
}

static void check_request(struct req *r, long long now)
{
	if (r->emitted) {
		if (r->a_reaped)
			free_req(r);
		return;
	}
	if (!r->timed_out && now >= r->deadline) {
		r->timed_out = 1;
		r->grace_deadline = now + KILL_GRACE_MS;
		kill_tree(r);
		if (!r->started && r->tmpl && r->tmpl->live)
			retire(r->tmpl, 1); /* it may be what is stuck */
	}
	if (r->sock >= 0 && (r->c_exited || (r->a_reaped && !r->via_tmpl)))
		on_sock(r); /* whatever A or C said before exiting */
	if (!r->started) {
		maybe_start(r); /* the template's fields may have come meanwhile */
		/* still spawning: done when every spawner process has gone */
		int gone = r->sock < 0 && r->a_reaped && (r->cpidfd < 0 || r->c_exited);
		if (gone && !r->timed_out && !r->error && retry_cold(r, now))
			return;
		if (gone || (r->timed_out && now >= r->grace_deadline)) {
			if (r->error && !r->timed_out)
				emit_child_error(r);
			else if (r->killed)
				emit_native_error(r, "E_SPAWN", "killed on request before it started", ECANCELED);
			else if (r->timed_out)
				emit_native_error(r, "E_UPCALL_TIMEOUT", "spawn", ETIMEDOUT);
			else
				emit_native_error(r, "E_SPAWN", "the spawner exited without reporting", EPROTO);
			kill_tree(r);
			finish(r);
		}
		return;
	}
	if ((r->c_exited && r->out.fd < 0 && r->err.fd < 0) || (r->timed_out && now >= r->grace_deadline)) {
		if (r->error && !r->timed_out)
			emit_child_error(r); /* exec failed in C */
		else
			emit_exit(r);
		finish(r);
	}
}

/* ------------------------------------------------------------------------
 * the broker's side: frames in, events out
 */

static void on_stdin(void)
{
	char *tmp = stdin_tmp;
	ssize_t n = read(0, tmp, sizeof(stdin_tmp));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		stdin_eof = 1;
		return;
	}
	if (ub_buf_append(&inbuf, tmp, (size_t)n) < 0) {
		fputs("upcall-zygote: out of memory reading requests\n", stderr);
		exit(UB_EXIT_SPAWNER);
	}
	for (;;) {
		size_t used = 0, len;

		if (discard) {
			used = discard < inbuf.len ? discard : inbuf.len;
			discard -= used;
		} else if (inbuf.len >= 4) {
			len = ub_frame_len((const unsigned char *)inbuf.p);
			if (len > UB_ZYGOTE_MAX_REQUEST_FRAME) {
				/* skip the body: the length says where the next frame starts */
				emit_error_raw(0, 0, "E_BAD_REQUEST", "E_BAD_REQUEST", "read frame", EMSGSIZE,
					       "request frame larger than 8 MiB");
				discard = len;
				used = 4;
			} else if (inbuf.len >= 4 + len) {
				handle_frame(inbuf.p + 4, len);
				used = 4 + len;
			}
		}
		if (!used)
			break;
		memmove(inbuf.p, inbuf.p + used, inbuf.len - used);
		explicit_bzero(inbuf.p + inbuf.len - used, used); /* the tail's stale copy */
		inbuf.len -= used;
	}
}

static void on_stdout(void)
{
	ssize_t n = write(1, outq.p + outq_off, outq.len - outq_off);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) { /* the broker is gone */
		stdin_eof = 1;
		explicit_bzero(outq.p, outq.len);
		outq.len = outq_off = 0;
		return;
	}
	outq_off += (size_t)n;
	if (outq_off == outq.len) {
		explicit_bzero(outq.p, outq.len);
		outq.len = outq_off = 0;
	}
}

/* The broker closed our stdin: kill what we started (C's process groups, any
 * A still working, the templates), reap our children, and leave.  Nothing
 * else of the containers is touched. */
static void __attribute__((noreturn)) shut_down(void)
{
	long long deadline = ub_now_ms() + SHUTDOWN_WAIT_MS;
	size_t i;

	for (i = 0; i < UB_ZYGOTE_MAX_INFLIGHT; i++)
		if (reqs[i].used && !reqs[i].emitted)
			kill_tree(&reqs[i]);
	for (i = 0; i < TEMPLATE_SLOTS; i++)
		if (tmpls[i].used)
			retire(&tmpls[i], 1);
	while (ub_now_ms() < deadline && waitpid(-1, NULL, WNOHANG) >= 0) {
		struct timespec ts = { 0, 5000000 };
		nanosleep(&ts, NULL);
	}
	exit(0);
}

enum kind { W_SOCK, W_IN, W_OUT, W_ERR, W_CPID, W_APID, W_BPID, W_TCTL, W_TPID, W_CN };

struct watch {
	struct req *r;
	struct tmpl *t;
	enum kind kind;
};

static int build_poll(struct pollfd *pfd, struct watch *w, long long now, int *timeout)
{
	int n = 0;
	size_t i;

#define WATCH(fd_, ev_, r_, t_, k_) do { pfd[n] = (struct pollfd){ (fd_), (ev_), 0 }; w[n] = (struct watch){ (r_), (t_), (k_) }; n++; } while (0)
	*timeout = -1;
	if (!stdin_eof && outq.len < MAX_OUTQ)
		WATCH(0, POLLIN, NULL, NULL, W_SOCK);
	if (outq.len > outq_off)
		WATCH(1, POLLOUT, NULL, NULL, W_IN);
	if (cn_fd >= 0)
		WATCH(cn_fd, POLLIN, NULL, NULL, W_CN);
	for (i = 0; i < UB_ZYGOTE_MAX_INFLIGHT; i++) {
		struct req *r = &reqs[i];
		long long due;

		if (!r->used)
			continue;
		if (r->apidfd >= 0)
			WATCH(r->apidfd, POLLIN, r, NULL, W_APID);
		if (r->emitted)
			continue;
		if (r->sock >= 0)
			WATCH(r->sock, POLLIN, r, NULL, W_SOCK);
		if (r->in_fd >= 0 && r->in_off < r->a.input_len)
			WATCH(r->in_fd, POLLOUT, r, NULL, W_IN);
		if (r->out.fd >= 0)
			WATCH(r->out.fd, POLLIN, r, NULL, W_OUT);
		if (r->err.fd >= 0)
			WATCH(r->err.fd, POLLIN, r, NULL, W_ERR);
		if (r->cpidfd >= 0 && !r->c_exited)
			WATCH(r->cpidfd, POLLIN, r, NULL, W_CPID);
		if (r->bpidfd >= 0 && !r->b_exited)
			WATCH(r->bpidfd, POLLIN, r, NULL, W_BPID);
		due = r->timed_out ? r->grace_deadline : r->deadline;
		if (*timeout < 0 || due - now < *timeout)
			*timeout = due > now ? (int)(due - now) : 0;
	}
	for (i = 0; i < TEMPLATE_SLOTS; i++) {
		struct tmpl *t = &tmpls[i];
		long long due;

		if (!t->used)
			continue;
		if (t->pidfd >= 0)
			WATCH(t->pidfd, POLLIN, NULL, t, W_TPID);
		if (t->ctl >= 0)
			WATCH(t->ctl, POLLIN, NULL, t, W_TCTL);
		if (!t->live)
			continue;
		due = t->last_used + opt_idle_ms;
		if (t->created + opt_ttl_ms < due)
			due = t->created + opt_ttl_ms;
		if (*timeout < 0 || due - now < *timeout)
			*timeout = due > now ? (int)(due - now) : 0;
	}
#undef WATCH
	return n;
}

static void dispatch(const struct pollfd *p, const struct watch *w)
{
	struct req *r = w->r;

	if (!p->revents)
		return;
	if (w->t) {
		if (w->kind == W_TPID)
			forget_template(w->t);
		else if (w->t->ctl >= 0)
			on_template_ctl(w->t);
		return;
	}
	if (w->kind == W_CN) {
		cn_drain();
		return;
	}
	if (!r) {
		if (p->fd == 0)
			on_stdin();
		else
			on_stdout();
		return;
	}
	if (r->emitted && w->kind != W_APID)
		return;
	switch (w->kind) {
	case W_SOCK: on_sock(r); break;
	case W_IN: on_stdin_pipe(r); break;
	case W_OUT: on_stream(r, &r->out, r->a.output_cap); break;
	case W_ERR: on_stream(r, &r->err, r->a.output_cap); break;
	case W_CPID:
		r->c_exited = 1;
		PROF(r - reqs, PF_Z_C_EXIT);
		read_status(r);
		break;
	case W_BPID:
		r->b_exited = 1;
		on_sock(r); /* B's 'P' is there: C may start */
		break;
	case W_APID: on_a_exit(r); break;
	default: break;
	}
}

static void expire_templates(long long now)
{
	size_t i;

	for (i = 0; i < TEMPLATE_SLOTS; i++) {
		struct tmpl *t = &tmpls[i];

		if (t->live && (now - t->last_used >= opt_idle_ms || now - t->created >= opt_ttl_ms))
			retire(t, 0);
	}
}

static void ensure_std_fds(void)
{
	int fd;

	while ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0 && fd <= 2)
		fcntl(fd, F_SETFD, 0);
	if (fd > 2)
		close(fd);
}

static int usage(FILE *to, int status)
{
	fputs("Usage: upcall-zygote [--no-context-cache] [--context-ttl-ms N] [--context-idle-ms N] [--max-contexts N]\n\n"
	      "Serve spawn requests (frames) on stdin, events on stdout.\n"
	      "See native-bindings/README.md.\n", to);
	return status;
}

int main(int argc, char **argv)
{
	static struct pollfd pfd[3 + UB_ZYGOTE_MAX_INFLIGHT * 7 + TEMPLATE_SLOTS * 2];
	static struct watch w[3 + UB_ZYGOTE_MAX_INFLIGHT * 7 + TEMPLATE_SLOTS * 2];
	size_t i;
	int k;

	zargc = argc;
	zargv = argv;
	for (k = 1; k < argc; k++) {
		const char *o = argv[k];
		char *end = NULL;
		long long v = k + 1 < argc ? strtoll(argv[k + 1], &end, 10) : -1;
		int num = end && *end == '\0' && v >= 0;

		if (strcmp(o, "--version") == 0 || strcmp(o, "-V") == 0) {
			printf("upcall-zygote " ZYGOTE_VERSION "\n");
			return 0;
		}
		if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0)
			return usage(stdout, 0);
		if (strcmp(o, "--no-context-cache") == 0) {
			opt_templates = 0;
		} else if (strcmp(o, "--context-ttl-ms") == 0 && num && v <= UB_ZYGOTE_MAX_TIMEOUT_MS) {
			opt_ttl_ms = v, k++;
		} else if (strcmp(o, "--context-idle-ms") == 0 && num && v <= UB_ZYGOTE_MAX_TIMEOUT_MS) {
			opt_idle_ms = v, k++;
		} else if (strcmp(o, "--max-contexts") == 0 && num && v <= MAX_TEMPLATES) {
			opt_max_templates = (int)v, k++;
		} else {
			return usage(stderr, 2);
		}
	}
	if (opt_max_templates == 0 || opt_ttl_ms == 0 || opt_idle_ms == 0)
		opt_templates = 0;
	ensure_std_fds();
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	zygote_pid = getpid();
	ub_compat_init(); /* probed once here; every A, B and T inherits the answers */
	cn_open();
#ifdef UB_ZYGOTE_PROFILE
	prof_init();
#endif
	nonblock(0);
	nonblock(1);
	for (i = 0; i < UB_ZYGOTE_MAX_INFLIGHT; i++)
		reset_req(&reqs[i]);
	for (i = 0; i < TEMPLATE_SLOTS; i++)
		tmpls[i].pidfd = tmpls[i].ctl = -1;

	for (;;) {
		long long now = ub_now_ms();
		int timeout, n;

		expire_templates(now);
		for (i = 0; i < UB_ZYGOTE_MAX_INFLIGHT; i++)
			if (reqs[i].used)
				check_request(&reqs[i], now);
		if (stdin_eof)
			shut_down();
		n = build_poll(pfd, w, now, &timeout);
		k = poll(pfd, (nfds_t)n, timeout);
		if (k < 0 && errno != EINTR) {
			perror("upcall-zygote: poll");
			return UB_EXIT_SPAWNER;
		}
		for (k = 0; k < n; k++)
			dispatch(&pfd[k], &w[k]);
	}
}
