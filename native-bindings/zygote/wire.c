/*
 * wire.c: the zygote's side of its pipes to the broker: spawn records parsed
 * (every length checked against the frame) into struct spawn_args, and
 * events framed into the output queue (started, stdout and error as binary
 * records, exit as JSON) that main.c writes out.  No process state: the
 * wire tests (test/zygote-wire-selftest.c) link it alone.
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
#include "zygote/zygote.h"

struct ub_buf outq;

/* "SIGKILL" for 9: the name the broker reports. */
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

void emit(const char *body, size_t len)
{
	unsigned char hdr[UB_FRAME_HEADER];

	ub_frame_put_len(hdr, (uint32_t)len);
	if (ub_buf_append(&outq, hdr, sizeof(hdr)) < 0 || ub_buf_append(&outq, body, len) < 0) {
		fputs("upcall-zygote: out of memory queueing an event\n", stderr);
		exit(UB_EXIT_SPAWNER);
	}
}

int parse_data_frame(const char *body, size_t len, int kind, unsigned long long *id, const char **data, size_t *n)
{
	if (len < UB_ZYGOTE_DATA_HEADER || (unsigned char)body[0] != kind)
		return -1;
	*id = ub_be64_get((const unsigned char *)body + 1);
	*data = body + UB_ZYGOTE_DATA_HEADER;
	*n = len - UB_ZYGOTE_DATA_HEADER;
	return 0;
}

int parse_control_frame(const char *body, size_t len, int *kind, unsigned long long *id)
{
	if (len != UB_ZYGOTE_DATA_HEADER ||
	    ((unsigned char)body[0] != UB_ZYGOTE_FRAME_EOF && (unsigned char)body[0] != UB_ZYGOTE_FRAME_KILL))
		return -1;
	*kind = (unsigned char)body[0];
	*id = ub_be64_get((const unsigned char *)body + 1);
	return 0;
}

void emit_data(int kind, unsigned long long id, const char *data, size_t n)
{
	unsigned char head[UB_FRAME_HEADER + UB_ZYGOTE_DATA_HEADER];

	ub_frame_put_len(head, (uint32_t)(UB_ZYGOTE_DATA_HEADER + n));
	head[UB_FRAME_HEADER] = (unsigned char)kind;
	ub_be64_put(head + UB_FRAME_HEADER + 1, id);
	if (ub_buf_append(&outq, head, sizeof(head)) < 0 || ub_buf_append(&outq, data, n) < 0) {
		fputs("upcall-zygote: out of memory queueing an event\n", stderr);
		exit(UB_EXIT_SPAWNER);
	}
}

/* s as one string of an error record: a 2-byte length, then at most
 * UB_ZYGOTE_ERROR_MAX_STRING of its bytes (cut at a character boundary). */
static size_t put_string(unsigned char *p, const char *s)
{
	size_t n = strlen(s);

	if (n > UB_ZYGOTE_ERROR_MAX_STRING) {
		n = UB_ZYGOTE_ERROR_MAX_STRING;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	p[0] = (unsigned char)(n >> 8);
	p[1] = (unsigned char)n;
	memcpy(p + 2, s, n);
	return 2 + n;
}

void emit_error_raw(int have_id, unsigned long long id, const char *code, const char *native,
			   const char *step, int err, const char *message)
{
	unsigned char body[UB_ZYGOTE_ERROR_HEADER + 4 * (2 + UB_ZYGOTE_ERROR_MAX_STRING)];
	size_t n = UB_ZYGOTE_ERROR_HEADER;

	body[0] = UB_ZYGOTE_FRAME_ERROR;
	ub_be64_put(body + 1, have_id ? id : 0);
	body[9] = have_id ? 0 : UB_ZYGOTE_ERROR_NO_ID;
	ub_frame_put_len(body + 10, (uint32_t)err);
	n += put_string(body + n, code);
	n += put_string(body + n, native);
	n += put_string(body + n, step);
	n += put_string(body + n, message);
	emit((const char *)body, n);
}

void emit_started(unsigned long long id, int pid, int ppid, unsigned long long start_time)
{
	unsigned char body[UB_ZYGOTE_STARTED_LEN];

	body[0] = UB_ZYGOTE_FRAME_STARTED;
	ub_be64_put(body + 1, id);
	ub_frame_put_len(body + 9, (uint32_t)pid);
	ub_frame_put_len(body + 13, (uint32_t)ppid);
	ub_be64_put(body + 17, start_time);
	emit((const char *)body, sizeof(body));
}

/* A native error (context/ codes) as the broker's code. */
static const char *broker_code(const char *native, int err)
{
	if (strcmp(native, "E_INIT_EXITED") == 0 || strcmp(native, "E_BAD_REQUEST") == 0 ||
	    strcmp(native, "E_UPCALL_TIMEOUT") == 0 || strcmp(native, "E_BUSY") == 0)
		return native;
	if (strcmp(native, "E_EXEC") == 0 && err == ENOENT)
		return "E_NOT_FOUND";
	return "E_SPAWN";
}

void emit_native_error(struct req *r, const char *native, const char *step, int err)
{
	char message[400];

	snprintf(message, sizeof(message), "%s: %s", step, strerror(err));
	emit_error_raw(1, r->id, broker_code(native, err), native, step, err, message);
}

/* The E message of a child: {"code":..,"step":..,"errno":N} (our own JSON). */
void emit_child_error(struct req *r)
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

void emit_exit(struct req *r)
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
 * requests: the spawn record (ub-wire.h), every length checked against the
 * frame
 */

void free_args(struct spawn_args *a)
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

/* A spawn record (ub-wire.h), read with every length checked against what
 * is left of the frame: never a byte past it. */
struct cursor {
	const unsigned char *p;
	size_t left;
};

static const unsigned char *take(struct cursor *c, size_t n)
{
	const unsigned char *p = c->p;

	if (n > c->left)
		return NULL;
	c->p += n;
	c->left -= n;
	return p;
}

/* A 4-byte length and that many bytes, without NUL, as a new string. */
static int take_string(struct cursor *c, char **out)
{
	const unsigned char *p = take(c, 4), *s;
	uint32_t n;

	if (!p)
		return -1;
	n = ub_frame_len(p);
	s = take(c, n);
	if (!s || memchr(s, '\0', n))
		return -1;
	*out = malloc((size_t)n + 1);
	if (!*out)
		return -1;
	memcpy(*out, s, n);
	(*out)[n] = '\0';
	return 0;
}

/* A 2-byte count (at most UB_ZYGOTE_MAX_ARGS), then that many strings, into a
 * new NULL-terminated array. */
static int take_strings(struct cursor *c, char ***out, const char *what, const char **why)
{
	const unsigned char *p = take(c, 2);
	size_t n;

	if (!p)
		return *why = "spawn record ends before a count", -1;
	n = (size_t)p[0] << 8 | p[1];
	if (n > UB_ZYGOTE_MAX_ARGS)
		return *why = what, -1;
	*out = calloc(n + 1, sizeof(char *));
	if (!*out)
		return *why = "out of memory", -1;
	for (size_t i = 0; i < n; i++)
		if (take_string(c, &(*out)[i]) < 0)
			return *why = "a string of the spawn record runs past it or holds a NUL", -1;
	return 0;
}

static int spawn_env(struct cursor *c, int given, struct spawn_args *a, const char **why)
{
	if (!given) {
		a->envp = calloc(2, sizeof(char *));
		if (!a->envp || !(a->envp[0] = strdup("PATH=" UB_CTX_DEFAULT_PATH)))
			return *why = "out of memory", -1;
		a->path = a->envp[0] + 5;
		return 0;
	}
	if (take_strings(c, &a->envp, "env has more than 256 entries", why) < 0)
		return -1;
	for (char **e = a->envp; *e; e++) {
		char *eq = strchr(*e, '=');

		if (!eq || eq == *e)
			return *why = "env must be NAME=value strings with a name", -1;
		if (eq - *e == 4 && strncmp(*e, "PATH", 4) == 0)
			a->path = eq + 1;
	}
	return 0;
}

static int spawn_tail(struct cursor *c, struct spawn_args *a, const char **why)
{
	const unsigned char *p;
	uint32_t n;

	if (take_string(c, &a->cwd) < 0)
		return *why = "cwd runs past the spawn record or holds a NUL", -1;
	if (!*a->cwd)
		ub_free_zeroed(a->cwd), a->cwd = NULL;
	else if (a->cwd[0] != '/')
		return *why = "cwd must be an absolute path", -1;
	p = take(c, 4);
	n = p ? ub_frame_len(p) : 0;
	if (!p || n > c->left)
		return *why = "stdin runs past the spawn record", -1;
	if (n) {
		a->input = malloc(n);
		if (!a->input)
			return *why = "out of memory", -1;
		memcpy(a->input, take(c, n), n);
		a->input_len = n;
	}
	if (c->left)
		return *why = "bytes after the spawn record", -1;
	return 0;
}

int parse_spawn_record(const char *body, size_t len, int *started_event, struct spawn_args *a, const char **why)
{
	const unsigned char *b = (const unsigned char *)body;
	struct cursor c;
	int mode, flags;
	uint32_t x;

	memset(a, 0, sizeof(*a));
	a->target.pidfd = -1; /* taken by handle_frame from the broker's a->broker_fd */
	a->stdio_broker_fd = a->stdio_fd = -1; /* the same for the socket, if any */
	if (len < UB_ZYGOTE_SPAWN_HEADER)
		return *why = "spawn record shorter than its header", -1;
	c.p = b + UB_ZYGOTE_SPAWN_HEADER;
	c.left = len - UB_ZYGOTE_SPAWN_HEADER;
	mode = b[9];
	flags = b[10];
	if (mode > UB_ZYGOTE_MODE_NETRELAY)
		return *why = "unknown mode", -1;
	a->builtin = mode == UB_ZYGOTE_MODE_ECHO_CONTEXT ? BUILTIN_ECHO_CONTEXT : mode == UB_ZYGOTE_MODE_NETRELAY ? BUILTIN_NETRELAY : BUILTIN_NONE;
	if (flags & ~(UB_ZYGOTE_SPAWN_HOST | UB_ZYGOTE_SPAWN_STREAM | UB_ZYGOTE_SPAWN_NO_STARTED | UB_ZYGOTE_SPAWN_ENV |
		      UB_ZYGOTE_SPAWN_SOCKET))
		return *why = "unknown flags", -1;
	if ((flags & UB_ZYGOTE_SPAWN_SOCKET) && (flags & UB_ZYGOTE_SPAWN_STREAM))
		return *why = "a socket request's stdin and stdout are its socket, not stream frames", -1;
	a->target.host = !!(flags & UB_ZYGOTE_SPAWN_HOST);
	a->stream = !!(flags & UB_ZYGOTE_SPAWN_STREAM);
	*started_event = !(flags & UB_ZYGOTE_SPAWN_NO_STARTED);
	x = ub_frame_len(b + 11);
	if (x == 0 || x > UB_ZYGOTE_MAX_TIMEOUT_MS)
		return *why = "timeoutMs must be an integer in 1..3600000", -1;
	a->timeout_ms = x;
	x = ub_frame_len(b + 15);
	if (x > UB_ZYGOTE_MAX_OUTPUT_CAP)
		return *why = "outputCap must be an integer in 0..8388608", -1;
	a->output_cap = x;
	x = ub_frame_len(b + 19);
	if (x > INT_MAX)
		return *why = "initPidfd must be a file descriptor number", -1;
	a->broker_fd = (int)x;
	x = ub_frame_len(b + 23);
	if (x == 0 || x > INT_MAX)
		return *why = "initPid must be a positive integer", -1;
	a->target.pid = (pid_t)x;
	a->target.start_time = ub_be64_get(b + 27);
	if (!a->target.start_time || a->target.start_time > 1ULL << 53)
		return *why = "initStartTime must be a positive integer", -1;
	a->target.pidns_ino = ub_be64_get(b + 35);
	if (!a->target.pidns_ino || a->target.pidns_ino > 1ULL << 53)
		return *why = "pidns must be a positive integer", -1;
	x = ub_frame_len(b + 43);
	if ((flags & UB_ZYGOTE_SPAWN_SOCKET) ? x > INT_MAX : x != 0)
		return *why = "stdioFd must be a file descriptor number with flag socket, else 0", -1;
	if (flags & UB_ZYGOTE_SPAWN_SOCKET)
		a->stdio_broker_fd = (int)x;
	if (take_strings(&c, &a->argv, "argv has more than 256 entries", why) < 0)
		return -1;
	if (!a->builtin && !a->argv[0])
		return *why = "argv must be a non-empty array of strings", -1;
	if (spawn_env(&c, flags & UB_ZYGOTE_SPAWN_ENV, a, why) < 0)
		return -1;
	if (spawn_tail(&c, a, why) < 0)
		return -1;
	if (a->stdio_broker_fd >= 0 && a->input_len)
		return *why = "a socket request's stdin is its socket: none in the record", -1;
	return 0;
}
