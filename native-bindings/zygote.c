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
 * /proc/<pid>/stat while it is a zombie (an init that never reaps).
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
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/keyctl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base64.h"
#include "context.h"
#include "ub-client.h"
#include "ub-kernel.h"

#define ZYGOTE_VERSION "0.1.0"
#define MAX_REQUEST_FRAME (8u << 20)
#define MAX_INFLIGHT 128
#define MAX_OUTPUT_CAP (8u << 20)
#define MAX_TIMEOUT_MS 3600000LL
#define MAX_OUTQ (256u << 20)
#define KILL_GRACE_MS 2000
#define SHUTDOWN_WAIT_MS 2000
#define MAX_ARGS 256
#define MSG_MAX 8192
#define CHILD_SOCK 3
#define EXIT_SPAWNER 125
#define EXIT_CANNOT_EXEC 126
#define EXIT_NOT_FOUND 127

struct pidfd_info_v0 {
	uint64_t mask, cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	int32_t exit_code;
};

/* struct clone_args, CLONE_ARGS_SIZE_VER0 (include/uapi/linux/sched.h) */
struct clone_args_v0 {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

struct buf {
	char *p;
	size_t len, cap;
};

struct spawn_args {
	struct ub_ctx_target target;
	int builtin;                    /* 0: exec argv */
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
	struct buf data;
	int truncated;
};

struct req {
	int used;
	unsigned long long id;
	struct spawn_args a;
	pid_t apid;
	int apidfd, a_reaped;
	int sock;                       /* our end of the socketpair */
	int in_fd;
	size_t in_off;
	struct stream out, err;
	int cpidfd;
	pid_t cpid;
	int got_r, started, c_exited, have_status, status;
	char *fields, *error;
	long long deadline, grace_deadline;
	int timed_out, emitted;
};

static struct req reqs[MAX_INFLIGHT];
static struct buf inbuf, outq;
static size_t outq_off, discard;
static int stdin_eof;
static pid_t zygote_pid;

/* ------------------------------------------------------------------------
 * small helpers
 */

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static int buf_append(struct buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *q;

		while (cap < b->len + n + 1)
			cap *= 2;
		q = realloc(b->p, cap);
		if (!q)
			return -1;
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* s as the body of a JSON string, ASCII only (bytes >= 0x80 become '?'), so
 * that no UTF-8 needs validating. */
static size_t json_ascii(char *out, size_t cap, const char *s)
{
	size_t n = 0;

	for (; *s && n + 8 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			n += snprintf(out + n, cap - n, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			n += snprintf(out + n, cap - n, c < 0x20 ? "\\u%04x" : "?", c);
		else
			out[n++] = (char)c;
	}
	out[n] = '\0';
	return n;
}

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
	unsigned char hdr[4] = { len >> 24, len >> 16, len >> 8, len };

	if (buf_append(&outq, hdr, 4) < 0 || buf_append(&outq, json, len) < 0) {
		fputs("upcall-zygote: out of memory queueing an event\n", stderr);
		exit(EXIT_SPAWNER);
	}
}

static void emit_error_raw(int have_id, unsigned long long id, const char *code, const char *native,
			   const char *step, int err, const char *message)
{
	char json[2048], idtext[32], s[600], m[600];

	snprintf(idtext, sizeof(idtext), have_id ? "%llu" : "null", id);
	json_ascii(s, sizeof(s), step);
	json_ascii(m, sizeof(m), message);
	emit(json, snprintf(json, sizeof(json),
			    "{\"id\":%s,\"event\":\"error\",\"code\":\"%s\",\"native\":\"%s\",\"step\":\"%s\",\"errno\":%d,\"message\":\"%s\"}",
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

static char *base64_of(const struct buf *b)
{
	char *out = malloc(ub_base64_encoded_len(b->len) + 1);

	if (!out) {
		fputs("upcall-zygote: out of memory encoding output\n", stderr);
		exit(EXIT_SPAWNER);
	}
	ub_base64_encode((const unsigned char *)(b->p ? b->p : ""), b->len, out);
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
		exit(EXIT_SPAWNER);
	}
	if (r->have_status && WIFEXITED(r->status))
		snprintf(code, sizeof(code), "%d", WEXITSTATUS(r->status));
	else if (r->have_status && WIFSIGNALED(r->status))
		snprintf(sig, sizeof(sig), "\"%s\"", signal_name(WTERMSIG(r->status), name, sizeof(name)));
	n = snprintf(json, cap,
		     "{\"id\":%llu,\"event\":\"exit\",\"code\":%s,\"signal\":%s,\"stdoutBase64\":\"%s\",\"stderrBase64\":\"%s\","
		     "\"truncated\":%s,\"timedOut\":%s,\"fields\":%s}",
		     r->id, code, sig, o, e, r->out.truncated || r->err.truncated ? "true" : "false",
		     r->timed_out ? "true" : "false", r->fields ? r->fields : "{}");
	emit(json, (size_t)n);
	free(json);
	free(o);
	free(e);
}

/* ------------------------------------------------------------------------
 * the child processes A, B, C
 */

static void child_report(const struct ub_ctx_error *e)
{
	char msg[1024], step[600];
	int n;

	json_ascii(step, sizeof(step), e->step);
	n = snprintf(msg, sizeof(msg), "E{\"code\":\"%s\",\"step\":\"%s\",\"errno\":%d}", e->code, step, e->err);
	send(CHILD_SOCK, msg, (size_t)n, MSG_NOSIGNAL);
}

static void __attribute__((noreturn)) child_fail(const struct ub_ctx_error *e)
{
	child_report(e);
	_exit(EXIT_SPAWNER);
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

static int send_pidfd(int sock, int fd)
{
	char data = 'P', control[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &data, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
	struct cmsghdr *cm;

	memset(control, 0, sizeof(control));
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : -1;
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
		_exit(EXIT_SPAWNER);
	if (ub_ctx_seal(ctx, &e) < 0)
		child_fail(&e);
	if (a->builtin) {
		close(CHILD_SOCK);
		_exit(builtin_echo_context());
	}
	ub_ctx_exec(a->argv, a->envp, a->path, &e);
	child_report(&e);
	_exit(e.err == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC);
}

static void __attribute__((noreturn)) run_b(struct ub_context *ctx, const struct spawn_args *a)
{
	int pidfd = -1;
	struct clone_args_v0 ca = { .flags = UB_CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&pidfd, .exit_signal = SIGCHLD };
	long c = syscall(UB_NR_clone3, &ca, sizeof(ca));

	if (c < 0) /* a pid namespace whose init died refuses new pids (ENOMEM) */
		child_fail_errno(ub_ctx_target_exited(ctx->pidfd) ? "E_INIT_EXITED" : "E_FORK", "clone3", errno);
	if (c == 0)
		run_c(ctx, a);
	if (send_pidfd(CHILD_SOCK, pidfd) < 0) {
		syscall(UB_NR_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
		_exit(EXIT_SPAWNER);
	}
	_exit(0);
}

static void __attribute__((noreturn)) run_a(const struct spawn_args *a, int in, int out, int err, int sock)
{
	struct ub_context ctx;
	struct ub_ctx_error e;
	char msg[MSG_MAX];
	pid_t b;
	int st, n;

	if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 || dup2(sock, CHILD_SOCK) < 0)
		_exit(EXIT_SPAWNER);
	/* nothing of the zygote: other requests' pipes, its own stdin/stdout */
	syscall(UB_NR_close_range, CHILD_SOCK + 1, ~0U, 0);
	fcntl(CHILD_SOCK, F_SETFD, FD_CLOEXEC);
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() != zygote_pid)
		_exit(EXIT_SPAWNER);
	default_signals();

	ub_ctx_init(&ctx);
	if (ub_ctx_open(&ctx, &a->target, &e) < 0 || ub_ctx_capture(&ctx, &e) < 0 ||
	    ub_ctx_apply_outside(&ctx, &e) < 0 || ub_ctx_enter(&ctx, a->cwd, &e) < 0)
		child_fail(&e);
	if (a->builtin)
		snprintf(ctx.fields[UB_F_DUMPABLE], UB_CTX_FIELD_LEN, "0 (builtin: no exec)");

	/* setns(CLONE_NEWPID) applies to children only: B is inside */
	b = fork();
	if (b < 0)
		child_fail_errno(ub_ctx_target_exited(ctx.pidfd) ? "E_INIT_EXITED" : "E_FORK", "fork", errno);
	if (b == 0)
		run_b(&ctx, a);
	while (waitpid(b, &st, 0) < 0)
		if (errno != EINTR)
			child_fail_errno("E_FORK", "waitpid", errno);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		_exit(EXIT_SPAWNER); /* B reported, or was killed */
	msg[0] = 'R';
	ub_ctx_fields_json(&ctx, msg + 1, sizeof(msg) - 1);
	n = (int)strlen(msg);
	send(CHILD_SOCK, msg, (size_t)n, MSG_NOSIGNAL);
	_exit(0);
}

/* ------------------------------------------------------------------------
 * requests: parsing (the document is validated by ub_json_validate first, so
 * the walk below only has to find boundaries; decoding is ub-client's)
 */

struct span {
	const char *p;
	size_t len;
};

static const char *skip_ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static const char *skip_string(const char *p, const char *e)
{
	for (p++; p < e && *p != '"'; p++)
		if (*p == '\\')
			p++;
	return p + 1;
}

static const char *skip_value(const char *p, const char *e)
{
	int depth = 0;

	if (*p == '"')
		return skip_string(p, e);
	if (*p != '{' && *p != '[') {
		while (p < e && !strchr(",}] \t\r\n", *p))
			p++;
		return p;
	}
	do {
		if (*p == '"') {
			p = skip_string(p, e);
			continue;
		}
		if (*p == '{' || *p == '[')
			depth++;
		else if (*p == '}' || *p == ']')
			depth--;
		p++;
	} while (p < e && depth > 0);
	return p;
}

struct iter {
	const char *p, *e;
	int obj;
};

static void iter_begin(struct iter *it, struct span v)
{
	it->p = v.p + 1;
	it->e = v.p + v.len;
	it->obj = *v.p == '{';
}

static int iter_next(struct iter *it, struct span *key, struct span *val)
{
	const char *p = skip_ws(it->p, it->e);

	if (p < it->e && *p == ',')
		p = skip_ws(p + 1, it->e);
	if (p >= it->e || *p == '}' || *p == ']')
		return 0;
	if (it->obj) {
		key->p = p;
		p = skip_string(p, it->e);
		key->len = (size_t)(p - key->p);
		p = skip_ws(skip_ws(p, it->e) + 1, it->e); /* the ':' */
	}
	val->p = p;
	p = skip_value(p, it->e);
	val->len = (size_t)(p - val->p);
	it->p = p;
	return 1;
}

static int span_is(struct span s, const char *lit)
{
	return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

/* A JSON integer in 0..2^53 (no sign, fraction or exponent). */
static int span_uint(struct span s, unsigned long long max, unsigned long long *out)
{
	unsigned long long v = 0;
	size_t i;

	if (s.len == 0 || s.len > 16)
		return -1;
	for (i = 0; i < s.len; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return -1;
		v = v * 10 + (unsigned long long)(s.p[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

static int span_string(struct span s, char **out)
{
	return s.len && *s.p == '"' ? ub_json_decode_string(s.p, s.len, out) : -1;
}

static void free_args(struct spawn_args *a)
{
	char **p;

	for (p = a->argv; p && *p; p++)
		free(*p);
	for (p = a->envp; p && *p; p++)
		free(*p);
	free(a->argv);
	free(a->envp);
	free(a->cwd);
	free(a->input);
	memset(a, 0, sizeof(*a));
}

static int parse_argv(struct span v, struct spawn_args *a, const char **why)
{
	struct iter it;
	struct span k, s;
	size_t n = 0;

	if (*v.p != '[')
		return *why = "argv must be an array of strings", -1;
	a->argv = calloc(MAX_ARGS + 1, sizeof(char *));
	if (!a->argv)
		return *why = "out of memory", -1;
	iter_begin(&it, v);
	while (iter_next(&it, &k, &s)) {
		if (n == MAX_ARGS)
			return *why = "argv has more than 256 entries", -1;
		if (span_string(s, &a->argv[n]) < 0)
			return *why = "argv must be an array of strings", -1;
		n++;
	}
	return 0;
}

static int parse_env(struct span v, struct spawn_args *a, const char **why)
{
	struct iter it;
	struct span k, s;
	size_t n = 0;

	if (*v.p != '{')
		return *why = "env must be an object of strings", -1;
	a->envp = calloc(MAX_ARGS + 1, sizeof(char *));
	if (!a->envp)
		return *why = "out of memory", -1;
	iter_begin(&it, v);
	while (iter_next(&it, &k, &s)) {
		char *name = NULL, *value = NULL;
		int bad;

		if (n == MAX_ARGS)
			return *why = "env has more than 256 entries", -1;
		bad = span_string(k, &name) < 0 || span_string(s, &value) < 0 || !*name || strchr(name, '=');
		if (!bad && asprintf(&a->envp[n], "%s=%s", name, value) < 0)
			a->envp[n] = NULL, bad = 1;
		if (!bad && strcmp(name, "PATH") == 0)
			a->path = a->envp[n] + 5;
		free(name);
		free(value);
		if (bad)
			return *why = "env must map names (without '=') to strings", -1;
		n++;
	}
	return 0;
}

static int parse_input(struct span v, struct spawn_args *a, const char **why)
{
	char *text = NULL;
	long n;

	if (span_string(v, &text) < 0)
		return *why = "stdinBase64 must be a string", -1;
	a->input = malloc(strlen(text) / 4 * 3 + 1);
	n = a->input ? ub_base64_decode(text, strlen(text), a->input) : -1;
	free(text);
	if (n < 0)
		return *why = "stdinBase64 is not valid base64", -1;
	a->input_len = (size_t)n;
	return 0;
}

enum key { K_ID, K_OP, K_PID, K_START, K_PIDNS, K_HOST, K_MODE, K_BUILTIN, K_ARGV, K_ENV, K_CWD,
	   K_STDIN, K_TIMEOUT, K_CAP, K_COUNT };
static const char *const key_names[K_COUNT] = {
	"id", "op", "initPid", "initStartTime", "pidns", "host", "mode", "builtin", "argv", "env", "cwd",
	"stdinBase64", "timeoutMs", "outputCap",
};

static int collect_members(const char *body, size_t len, struct span v[K_COUNT], const char **why)
{
	struct iter it;
	struct span whole = { skip_ws(body, body + len), 0 }, k, val;

	whole.len = (size_t)(body + len - whole.p);
	if (*whole.p != '{')
		return *why = "a request is a JSON object", -1;
	iter_begin(&it, whole);
	while (iter_next(&it, &k, &val)) {
		char *name = NULL;
		int i;

		if (span_string(k, &name) < 0)
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

static int parse_request(const char *body, size_t len, struct spawn_args *a, const char **why)
{
	struct span v[K_COUNT] = { { 0 } };
	unsigned long long x;
	char *s = NULL;

	if (collect_members(body, len, v, why) < 0)
		return -1;
	if (!v[K_OP].p || span_string(v[K_OP], &s) < 0 || strcmp(s, "spawn") != 0)
		return free(s), *why = "op must be \"spawn\"", -1;
	free(s);
	s = NULL;
	if (!v[K_PID].p || span_uint(v[K_PID], INT_MAX, &x) < 0 || x == 0)
		return *why = "initPid must be a positive integer", -1;
	a->target.pid = (pid_t)x;
	a->target.pidfd = -1;
	if (!v[K_START].p || span_uint(v[K_START], 1ULL << 53, &a->target.start_time) < 0 || !a->target.start_time)
		return *why = "initStartTime must be a positive integer", -1;
	if (!v[K_PIDNS].p || span_uint(v[K_PIDNS], 1ULL << 53, &a->target.pidns_ino) < 0 || !a->target.pidns_ino)
		return *why = "pidns must be a positive integer", -1;
	if (v[K_HOST].p && !span_is(v[K_HOST], "true") && !span_is(v[K_HOST], "false"))
		return *why = "host must be a boolean", -1;
	a->target.host = v[K_HOST].p && span_is(v[K_HOST], "true");
	if (!v[K_MODE].p || (!span_is(v[K_MODE], "\"exec\"") && !span_is(v[K_MODE], "\"builtin\"")))
		return *why = "mode must be \"exec\" or \"builtin\"", -1;
	a->builtin = span_is(v[K_MODE], "\"builtin\"");
	if (a->builtin && (!v[K_BUILTIN].p || !span_is(v[K_BUILTIN], "\"echo-context\"")))
		return *why = "unknown builtin (known: echo-context)", -1;
	if (!a->builtin && v[K_BUILTIN].p)
		return *why = "builtin is for mode \"builtin\"", -1;
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
	if (v[K_CWD].p && (span_string(v[K_CWD], &a->cwd) < 0 || a->cwd[0] != '/'))
		return *why = "cwd must be an absolute path", -1;
	if (v[K_STDIN].p && parse_input(v[K_STDIN], a, why) < 0)
		return -1;
	if (!v[K_TIMEOUT].p || span_uint(v[K_TIMEOUT], MAX_TIMEOUT_MS, &x) < 0 || x == 0)
		return *why = "timeoutMs must be an integer in 1..3600000", -1;
	a->timeout_ms = (long long)x;
	x = 1u << 20;
	if (v[K_CAP].p && span_uint(v[K_CAP], MAX_OUTPUT_CAP, &x) < 0)
		return *why = "outputCap must be an integer in 0..8388608", -1;
	a->output_cap = (size_t)x;
	return 0;
}

/* ------------------------------------------------------------------------
 * request lifecycle in the zygote
 */

static void kill_tree(struct req *r)
{
	if (r->cpidfd >= 0) {
		/* the whole process group C leads (setsid), race-free through the pidfd */
		if (syscall(UB_NR_pidfd_send_signal, r->cpidfd, SIGKILL, NULL, UB_PIDFD_SIGNAL_PROCESS_GROUP) < 0 &&
		    errno == EINVAL && !r->c_exited && r->cpid > 0)
			kill(-r->cpid, SIGKILL); /* before 6.9; C is unreaped, so the number is still its */
		syscall(UB_NR_pidfd_send_signal, r->cpidfd, SIGKILL, NULL, 0);
	}
	if (r->apidfd >= 0 && !r->a_reaped)
		syscall(UB_NR_pidfd_send_signal, r->apidfd, SIGKILL, NULL, 0);
}

static void reset_req(struct req *r)
{
	memset(r, 0, sizeof(*r));
	r->sock = r->in_fd = r->out.fd = r->err.fd = r->cpidfd = r->apidfd = -1;
}

static void free_req(struct req *r)
{
	close_fd(&r->sock);
	close_fd(&r->in_fd);
	close_fd(&r->out.fd);
	close_fd(&r->err.fd);
	close_fd(&r->cpidfd);
	close_fd(&r->apidfd);
	buf_free(&r->out.data);
	buf_free(&r->err.data);
	free(r->fields);
	free(r->error);
	free_args(&r->a);
	reset_req(r);
}

/* After the event: release everything but A's pidfd, which waits to be reaped. */
static void finish(struct req *r)
{
	r->emitted = 1;
	close_fd(&r->sock); /* a C still waiting for 'G' reads EOF and exits */
	close_fd(&r->in_fd);
	close_fd(&r->out.fd);
	close_fd(&r->err.fd);
	close_fd(&r->cpidfd);
	buf_free(&r->out.data);
	buf_free(&r->err.data);
	if (r->a_reaped)
		free_req(r);
}

static int nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int start_request(struct req *r)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, sv[2] = { -1, -1 }, e;
	pid_t pid;

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		goto fail;
	pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0)
		run_a(&r->a, in[0], out[1], err[1], sv[1]);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	close(sv[1]);
	r->apid = pid;
	r->apidfd = (int)syscall(UB_NR_pidfd_open, pid, 0); /* our unreaped child: cannot be reused */
	r->in_fd = in[1];
	r->out.fd = out[0];
	r->err.fd = err[0];
	r->sock = sv[0];
	nonblock(r->in_fd);
	nonblock(r->out.fd);
	nonblock(r->err.fd);
	nonblock(r->sock);
	if (r->a.input_len == 0)
		close_fd(&r->in_fd);
	r->deadline = now_ms() + r->a.timeout_ms;
	return 0;
fail:
	e = errno;
	for (int i = 0; i < 2; i++) {
		close_fd(&in[i]);
		close_fd(&out[i]);
		close_fd(&err[i]);
		close_fd(&sv[i]);
	}
	errno = e;
	return -1;
}

static struct req *free_slot(void)
{
	size_t i;

	for (i = 0; i < MAX_INFLIGHT; i++)
		if (!reqs[i].used)
			return &reqs[i];
	return NULL;
}

static void handle_frame(const char *body, size_t len)
{
	unsigned long long id = 0;
	const char *why = "invalid JSON", *v;
	struct req *r;
	size_t vlen;
	int have_id = 0;
	struct spawn_args a = { 0 };

	if (ub_json_validate(body, len) < 0) {
		emit_error_raw(0, 0, "E_BAD_REQUEST", "E_BAD_REQUEST", "parse request", EINVAL, why);
		return;
	}
	if (ub_json_find(body, len, "id", &v, &vlen) == 0 && span_uint((struct span){ v, vlen }, 1ULL << 53, &id) == 0)
		have_id = 1;
	if (!have_id) {
		emit_error_raw(0, 0, "E_BAD_REQUEST", "E_BAD_REQUEST", "parse request", EINVAL, "id must be an integer in 0..2^53");
		return;
	}
	if (parse_request(body, len, &a, &why) < 0) {
		free_args(&a);
		emit_error_raw(1, id, "E_BAD_REQUEST", "E_BAD_REQUEST", "parse request", EINVAL, why);
		return;
	}
	r = free_slot();
	if (!r) {
		free_args(&a);
		emit_error_raw(1, id, "E_BUSY", "E_BUSY", "accept request", EAGAIN, "too many upcalls in flight (128)");
		return;
	}
	r->used = 1;
	r->id = id;
	r->a = a;
	if (start_request(r) < 0) {
		int e = errno;
		emit_native_error(r, "E_FORK", "start spawner", e);
		free_req(r);
	}
}

/* The exit status of C once its pidfd polled readable. */
static void read_status(struct req *r)
{
	int tries;

	for (tries = 0; tries < 3; tries++) {
		struct pidfd_info_v0 info = { .mask = UB_PIDFD_INFO_EXIT };
		char path[64], *p, *stat = NULL;
		int fd, field = 2;
		ssize_t n;

		if (ioctl(r->cpidfd, UB_PIDFD_GET_INFO, &info) == 0 && (info.mask & UB_PIDFD_INFO_EXIT)) {
			r->status = info.exit_code; /* reaped by init */
			r->have_status = 1;
			return;
		}
		/* A zombie (init has not reaped it): its pid cannot be reused, so
		 * /proc/<pid>/stat is C's; field 52 is the exit code in wait() form.
		 * Asking the pidfd again afterwards proves it was still unreaped. */
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)r->cpid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		stat = malloc(4096);
		n = fd >= 0 && stat ? read(fd, stat, 4095) : -1;
		if (fd >= 0)
			close(fd);
		if (n > 0) {
			stat[n] = '\0';
			for (p = strrchr(stat, ')'); p && *p && field < 52; p++)
				if (*p == ' ')
					field++;
			memset(&info, 0, sizeof(info));
			info.mask = UB_PIDFD_INFO_EXIT;
			if (p && field == 52 && !(ioctl(r->cpidfd, UB_PIDFD_GET_INFO, &info) == 0 && (info.mask & UB_PIDFD_INFO_EXIT))) {
				r->status = atoi(p);
				r->have_status = 1;
				free(stat);
				return;
			}
		}
		free(stat);
	}
}

static void maybe_start(struct req *r)
{
	struct pidfd_info_v0 info = { .mask = UB_PIDFD_INFO_PID };
	char json[160];

	if (r->started || r->cpidfd < 0 || !r->got_r || r->error || r->timed_out || r->emitted)
		return;
	r->started = 1;
	if (ioctl(r->cpidfd, UB_PIDFD_GET_INFO, &info) < 0)
		info.ppid = 0;
	emit(json, snprintf(json, sizeof(json), "{\"id\":%llu,\"event\":\"started\",\"pid\":%d,\"ppid\":%d}", r->id,
			    (int)r->cpid, (int)info.ppid));
	send(r->sock, "G", 1, MSG_NOSIGNAL);
}

static void on_message(struct req *r, const char *msg, size_t n, int fd)
{
	struct pidfd_info_v0 info = { .mask = UB_PIDFD_INFO_PID };

	if (n >= 1 && msg[0] == 'P' && fd >= 0 && r->cpidfd < 0) {
		r->cpidfd = fd;
		if (ioctl(fd, UB_PIDFD_GET_INFO, &info) == 0)
			r->cpid = (pid_t)info.pid; /* C waits for 'G': alive, so the pid is known */
		if (r->timed_out || r->emitted)
			kill_tree(r);
		return;
	}
	if (fd >= 0)
		close(fd);
	if (n >= 1 && msg[0] == 'R' && !r->got_r && ub_json_validate(msg + 1, n - 1) == 0) {
		r->got_r = 1;
		r->fields = strndup(msg + 1, n - 1);
	} else if (n >= 1 && msg[0] == 'E' && !r->error && ub_json_validate(msg + 1, n - 1) == 0) {
		r->error = strndup(msg + 1, n - 1);
	}
}

static void on_sock(struct req *r)
{
	for (;;) {
		char data[MSG_MAX], control[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { data, sizeof(data) };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
		struct cmsghdr *cm;
		ssize_t n = recvmsg(r->sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		int fd = -1;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			close_fd(&r->sock); /* A, B and C all closed their end */
			break;
		}
		for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof(int)))
				memcpy(&fd, CMSG_DATA(cm), sizeof(int));
		on_message(r, data, (size_t)n, fd);
	}
	maybe_start(r);
}

/* Output beyond the cap is read and dropped, so the program never blocks on
 * a full pipe; the event says "truncated". */
static void on_stream(struct stream *s, size_t cap)
{
	char tmp[65536];
	int rounds;

	for (rounds = 0; rounds < 16; rounds++) {
		ssize_t n = read(s->fd, tmp, sizeof(tmp));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			close_fd(&s->fd);
			return;
		}
		if (s->data.len < cap) {
			size_t take = (size_t)n < cap - s->data.len ? (size_t)n : cap - s->data.len;
			if (buf_append(&s->data, tmp, take) < 0)
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
	if ((n < 0 && errno != EAGAIN && errno != EINTR) || r->in_off >= r->a.input_len)
		close_fd(&r->in_fd); /* done, or the program closed its stdin (EPIPE) */
}

static void on_a_exit(struct req *r)
{
	int st;
	pid_t p = waitpid(r->apid, &st, WNOHANG);

	if (p == r->apid || (p < 0 && errno == ECHILD)) {
		r->a_reaped = 1;
		close_fd(&r->apidfd);
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
	}
	if (r->sock >= 0 && (r->a_reaped || r->c_exited))
		on_sock(r); /* whatever A or C said before exiting */
	if (!r->started && r->a_reaped && !r->got_r && r->cpidfd >= 0 && !r->c_exited)
		kill_tree(r); /* A died before C became init's child: C would wait forever */
	if (!r->started) {
		/* still spawning: done when every spawner process has gone */
		int gone = r->sock < 0 && r->a_reaped && (r->cpidfd < 0 || r->c_exited);
		if (gone || (r->timed_out && now >= r->grace_deadline)) {
			if (r->error && !r->timed_out)
				emit_child_error(r);
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
	char tmp[65536];
	ssize_t n = read(0, tmp, sizeof(tmp));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		stdin_eof = 1;
		return;
	}
	if (buf_append(&inbuf, tmp, (size_t)n) < 0) {
		fputs("upcall-zygote: out of memory reading requests\n", stderr);
		exit(EXIT_SPAWNER);
	}
	for (;;) {
		size_t used = 0, len;

		if (discard) {
			used = discard < inbuf.len ? discard : inbuf.len;
			discard -= used;
		} else if (inbuf.len >= 4) {
			const unsigned char *h = (const unsigned char *)inbuf.p;

			len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
			if (len > MAX_REQUEST_FRAME) {
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
		outq.len = outq_off = 0;
		return;
	}
	outq_off += (size_t)n;
	if (outq_off == outq.len)
		outq.len = outq_off = 0;
}

/* The broker closed our stdin: kill what we started (C's process groups and
 * any A still working), reap the As, and leave.  Nothing else of the
 * containers is touched. */
static void __attribute__((noreturn)) shut_down(void)
{
	long long deadline = now_ms() + SHUTDOWN_WAIT_MS;
	size_t i;

	for (i = 0; i < MAX_INFLIGHT; i++)
		if (reqs[i].used && !reqs[i].emitted)
			kill_tree(&reqs[i]);
	while (now_ms() < deadline && waitpid(-1, NULL, WNOHANG) >= 0) {
		struct timespec ts = { 0, 5000000 };
		nanosleep(&ts, NULL);
	}
	exit(0);
}

enum kind { W_SOCK, W_IN, W_OUT, W_ERR, W_CPID, W_APID };

struct watch {
	struct req *r;
	enum kind kind;
};

static int build_poll(struct pollfd *pfd, struct watch *w, long long now, int *timeout)
{
	int n = 0;
	size_t i;

#define WATCH(fd_, ev_, r_, k_) do { pfd[n] = (struct pollfd){ (fd_), (ev_), 0 }; w[n] = (struct watch){ (r_), (k_) }; n++; } while (0)
	*timeout = -1;
	if (!stdin_eof && outq.len < MAX_OUTQ)
		WATCH(0, POLLIN, NULL, W_SOCK);
	if (outq.len > outq_off)
		WATCH(1, POLLOUT, NULL, W_IN);
	for (i = 0; i < MAX_INFLIGHT; i++) {
		struct req *r = &reqs[i];
		long long due;

		if (!r->used)
			continue;
		if (r->apidfd >= 0)
			WATCH(r->apidfd, POLLIN, r, W_APID);
		if (r->emitted)
			continue;
		if (r->sock >= 0)
			WATCH(r->sock, POLLIN, r, W_SOCK);
		if (r->in_fd >= 0)
			WATCH(r->in_fd, POLLOUT, r, W_IN);
		if (r->out.fd >= 0)
			WATCH(r->out.fd, POLLIN, r, W_OUT);
		if (r->err.fd >= 0)
			WATCH(r->err.fd, POLLIN, r, W_ERR);
		if (r->cpidfd >= 0 && !r->c_exited)
			WATCH(r->cpidfd, POLLIN, r, W_CPID);
		due = r->timed_out ? r->grace_deadline : r->deadline;
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
	case W_OUT: on_stream(&r->out, r->a.output_cap); break;
	case W_ERR: on_stream(&r->err, r->a.output_cap); break;
	case W_CPID:
		r->c_exited = 1;
		read_status(r);
		break;
	case W_APID: on_a_exit(r); break;
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

int main(int argc, char **argv)
{
	static struct pollfd pfd[2 + MAX_INFLIGHT * 6];
	static struct watch w[2 + MAX_INFLIGHT * 6];
	size_t i;

	if (argc > 1) {
		int version = strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0;
		printf(version ? "upcall-zygote " ZYGOTE_VERSION "\n"
			       : "Usage: upcall-zygote\n\nServe spawn requests (frames) on stdin, events on stdout.\n"
				 "See native-bindings/README.md.\n");
		return version || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ? 0 : 2;
	}
	ensure_std_fds();
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	zygote_pid = getpid();
	nonblock(0);
	nonblock(1);
	for (i = 0; i < MAX_INFLIGHT; i++)
		reset_req(&reqs[i]);

	for (;;) {
		long long now = now_ms();
		int timeout, n, k;

		for (i = 0; i < MAX_INFLIGHT; i++)
			if (reqs[i].used)
				check_request(&reqs[i], now);
		if (stdin_eof)
			shut_down();
		n = build_poll(pfd, w, now, &timeout);
		k = poll(pfd, (nfds_t)n, timeout);
		if (k < 0 && errno != EINTR) {
			perror("upcall-zygote: poll");
			return EXIT_SPAWNER;
		}
		for (k = 0; k < n; k++)
			dispatch(&pfd[k], &w[k]);
	}
}
