/*
 * wire.c: the zygote's side of its pipes to the broker: requests parsed
 * (validated by ub_json_validate first, then walked with basic/json.c) into
 * struct spawn_args, and events framed into the output queue (started,
 * stdout and error as binary records, exit as JSON) that main.c writes out.  No process state: the wire tests
 * (test/zygote-wire-selftest.c) link it alone.
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
 * requests: parsing (the document is validated by ub_json_validate first;
 * the walk and the decoding are basic/json.c's)
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

static const char *const key_names[K_COUNT] = {
	"id", "op", "initPid", "initStartTime", "pidns", "host", "mode", "builtin", "argv", "env", "cwd",
	"stdinBase64", "timeoutMs", "outputCap", "stream", "startedEvent", "initPidfd",
};

int collect_members(const char *body, size_t len, struct ub_json_span v[K_COUNT], const char **why)
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

int parse_request(struct ub_json_span v[K_COUNT], struct spawn_args *a, const char **why)
{
	unsigned long long x;

	if (!v[K_PID].p || ub_json_uint(v[K_PID], INT_MAX, &x) < 0 || x == 0)
		return *why = "initPid must be a positive integer", -1;
	a->target.pid = (pid_t)x;
	a->target.pidfd = -1; /* taken by handle_frame from the broker's a->broker_fd */
	if (!v[K_PIDFD].p || ub_json_uint(v[K_PIDFD], INT_MAX, &x) < 0)
		return *why = "initPidfd must be a file descriptor number", -1;
	a->broker_fd = (int)x;
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
