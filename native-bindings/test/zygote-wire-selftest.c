/*
 * zygote-wire-selftest: the zygote's wire (zygote/wire.c) on its own: spawn
 * records parsed as the zygote parses them (parse_spawn_record, from
 * exact-size copies), hostile ones (every truncation, lengths past the frame,
 * fields out of range) refused with the reason the broker sees,
 * events framed into the output queue (started and error as binary records,
 * exit as a JSON object), and the binary stdin and stdout frames (kind,
 * 8-byte id, raw bytes) and the eof and kill records (kind and id alone).
 *
 * Prints "FAIL ..." lines (every check with -v), then "N passed, N failed".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "basic/frame.h"
#include "ub-json.h"
#include "zygote/zygote.h"

#include "selftest.h"

/* A spawn record under construction. */
struct rec {
	unsigned char b[16384];
	size_t n;
};

static void put(struct rec *r, const void *p, size_t n)
{
	memcpy(r->b + r->n, p, n);
	r->n += n;
}

static void put32(struct rec *r, uint32_t v)
{
	ub_frame_put_len(r->b + r->n, v);
	r->n += 4;
}

static void put64(struct rec *r, uint64_t v)
{
	ub_be64_put(r->b + r->n, v);
	r->n += 8;
}

static void put_count(struct rec *r, size_t n)
{
	r->b[r->n++] = (unsigned char)(n >> 8);
	r->b[r->n++] = (unsigned char)n;
}

static void put_str(struct rec *r, const char *s)
{
	put32(r, (uint32_t)strlen(s));
	put(r, s, strlen(s));
}

/* The header: id 1, initPidfd 7, initPid 42, initStartTime 1234, pidns
 * 4026531836, stdioFd 9 with flag socket (else 0). */
static void head(struct rec *r, int mode, int flags, uint32_t timeout, uint32_t cap)
{
	r->n = 0;
	r->b[r->n++] = UB_ZYGOTE_FRAME_SPAWN;
	put64(r, 1);
	r->b[r->n++] = (unsigned char)mode;
	r->b[r->n++] = (unsigned char)flags;
	put32(r, timeout);
	put32(r, cap);
	put32(r, 7);
	put32(r, 42);
	put64(r, 1234);
	put64(r, 4026531836ULL);
	put32(r, flags & UB_ZYGOTE_SPAWN_SOCKET ? 9 : 0);
}

/* argv of one "x", no env, no cwd, no stdin: after head(). */
static void rest(struct rec *r)
{
	put_count(r, 1);
	put_str(r, "x");
	put32(r, 0);
	put32(r, 0);
}

/* Parse one record as handle_frame does, from an exact-size copy: 0 and *a, or -1 and *why. */
static int parse(const struct rec *r, size_t len, struct spawn_args *a, int *started, const char **why)
{
	char *copy = exact((const char *)r->b, len);
	int rc;

	*why = "";
	rc = parse_spawn_record(copy, len, started, a, why);
	free(copy); /* the strings of *a are copies: the frame may go */
	return rc;
}

/* The record refused, with a reason that contains want. */
static void refused(int line, const struct rec *r, const char *want)
{
	struct spawn_args a;
	const char *why;
	int started, rc = parse(r, r->n, &a, &started, &why);

	check(rc < 0 && strstr(why, want) != NULL, line, "", "refused (%s): %s", want, rc < 0 ? why : "accepted");
	free_args(&a);
}
#define REFUSED(r, want) refused(__LINE__, r, want)

static void full(struct rec *r)
{
	head(r, UB_ZYGOTE_MODE_EXEC, UB_ZYGOTE_SPAWN_ENV, 5000, 100);
	put_count(r, 2);
	put_str(r, "/bin/echo");
	put_str(r, "h\xc3\xa9");
	put_count(r, 2);
	put_str(r, "PATH=/bin");
	put_str(r, "A=b=c");
	put_str(r, "/tmp");
	put32(r, 3);
	put(r, "h\0i", 3);
}

static void test_spawn(void)
{
	static struct rec r;
	struct spawn_args a;
	const char *why = "";
	int started = 0, rc;

	full(&r);
	rc = parse(&r, r.n, &a, &started, &why);
	CHECK(rc == 0, "full spawn: %s", why);
	CHECK(a.target.pid == 42 && a.target.start_time == 1234 && a.target.pidns_ino == 4026531836ULL && a.target.pidfd == -1);
	CHECK(a.broker_fd == 7, "initPidfd is the broker's fd number (taken later, by handle_frame): %d", a.broker_fd);
	CHECK(a.stdio_broker_fd == -1 && a.stdio_fd == -1, "no socket without its flag");
	CHECK(!a.target.host && a.builtin == BUILTIN_NONE && !a.stream && started);
	CHECK(a.argv && !strcmp(a.argv[0], "/bin/echo") && !strcmp(a.argv[1], "h\xc3\xa9") && !a.argv[2]);
	CHECK(a.envp && !strcmp(a.envp[0], "PATH=/bin") && !strcmp(a.envp[1], "A=b=c") && !a.envp[2]);
	CHECK(a.path && !strcmp(a.path, "/bin"));
	CHECK(a.cwd && !strcmp(a.cwd, "/tmp"));
	CHECK(a.input_len == 3 && !memcmp(a.input, "h\0i", 3), "stdin raw, a NUL included");
	CHECK(a.timeout_ms == 5000 && a.output_cap == 100);
	free_args(&a);

	/* every truncation of it is refused, never read past (exact-size copies) */
	for (size_t n = 0; n < r.n; n++) {
		rc = parse(&r, n, &a, &started, &why);
		CHECK(rc < 0, "truncated to %zu of %zu bytes: refused", n, r.n);
		free_args(&a);
	}

	/* no env: PATH only; empty env given: none; no cwd, no stdin */
	head(&r, UB_ZYGOTE_MODE_EXEC, UB_ZYGOTE_SPAWN_NO_STARTED, 1, 0);
	rest(&r);
	rc = parse(&r, r.n, &a, &started, &why);
	CHECK(rc == 0, "minimal spawn: %s", why);
	CHECK(a.envp && !strcmp(a.envp[0], "PATH=" UB_CTX_DEFAULT_PATH) && a.path && !a.envp[1]);
	CHECK(!a.cwd && !a.input && !started && a.output_cap == 0);
	free_args(&a);
	head(&r, UB_ZYGOTE_MODE_EXEC, UB_ZYGOTE_SPAWN_ENV, 1, 0);
	put_count(&r, 1);
	put_str(&r, "x");
	put_count(&r, 0);
	put32(&r, 0);
	put32(&r, 0);
	rc = parse(&r, r.n, &a, &started, &why);
	CHECK(rc == 0 && a.envp && !a.envp[0] && !a.path, "empty env: %s", why);
	free_args(&a);

	/* builtins need no argv */
	head(&r, UB_ZYGOTE_MODE_NETRELAY, UB_ZYGOTE_SPAWN_STREAM | UB_ZYGOTE_SPAWN_HOST, 1, 0);
	put_count(&r, 0);
	put32(&r, 0);
	put32(&r, 0);
	rc = parse(&r, r.n, &a, &started, &why);
	CHECK(rc == 0, "builtin: %s", why);
	CHECK(a.builtin == BUILTIN_NETRELAY && a.stream && a.target.host);
	free_args(&a);

	/* a socket request: stdin and stdout are the broker's fd stdioFd (taken later, by handle_frame) */
	head(&r, UB_ZYGOTE_MODE_NETRELAY, UB_ZYGOTE_SPAWN_SOCKET, 1, 0);
	put_count(&r, 0);
	put32(&r, 0);
	put32(&r, 0);
	rc = parse(&r, r.n, &a, &started, &why);
	CHECK(rc == 0, "socket: %s", why);
	CHECK(a.builtin == BUILTIN_NETRELAY && !a.stream && a.stdio_broker_fd == 9 && a.stdio_fd == -1 && a.target.pidfd == -1);
	free_args(&a);
}

/* Set a 4- or 8-byte field of the header (offset off) of a valid record. */
static void field(struct rec *r, size_t off, int wide, uint64_t v)
{
	head(r, UB_ZYGOTE_MODE_EXEC, 0, 1, 0);
	rest(r);
	if (wide)
		ub_be64_put(r->b + off, v);
	else
		ub_frame_put_len(r->b + off, (uint32_t)v);
}

static void test_refused(void)
{
	static struct rec r;

	head(&r, UB_ZYGOTE_MODE_EXEC, 0, 1, 0);
	rest(&r);
	r.b[r.n++] = 0;
	REFUSED(&r, "bytes after the spawn record");
	head(&r, 3, 0, 1, 0);
	rest(&r);
	REFUSED(&r, "unknown mode");
	head(&r, UB_ZYGOTE_MODE_EXEC, 0x20, 1, 0);
	rest(&r);
	REFUSED(&r, "unknown flags");
	head(&r, UB_ZYGOTE_MODE_NETRELAY, UB_ZYGOTE_SPAWN_SOCKET | UB_ZYGOTE_SPAWN_STREAM, 1, 0);
	rest(&r);
	REFUSED(&r, "a socket request's stdin and stdout are its socket");
	head(&r, UB_ZYGOTE_MODE_NETRELAY, UB_ZYGOTE_SPAWN_SOCKET, 1, 0);
	put_count(&r, 0);
	put32(&r, 0);
	put32(&r, 1);
	put(&r, "x", 1);
	REFUSED(&r, "a socket request's stdin is its socket");
	head(&r, UB_ZYGOTE_MODE_NETRELAY, UB_ZYGOTE_SPAWN_SOCKET, 1, 0);
	rest(&r);
	ub_frame_put_len(r.b + 43, 0x80000000U);
	REFUSED(&r, "stdioFd must be a file descriptor number");
	head(&r, UB_ZYGOTE_MODE_EXEC, 0, 0, 0);
	rest(&r);
	REFUSED(&r, "timeoutMs must be an integer in 1..3600000");
	head(&r, UB_ZYGOTE_MODE_EXEC, 0, UB_ZYGOTE_MAX_TIMEOUT_MS + 1, 0);
	rest(&r);
	REFUSED(&r, "timeoutMs must be an integer in 1..3600000");
	head(&r, UB_ZYGOTE_MODE_EXEC, 0, 1, UB_ZYGOTE_MAX_OUTPUT_CAP + 1);
	rest(&r);
	REFUSED(&r, "outputCap must be an integer");
	field(&r, 19, 0, 0x80000000U);
	REFUSED(&r, "initPidfd must be a file descriptor number");
	field(&r, 23, 0, 0);
	REFUSED(&r, "initPid must be a positive integer");
	field(&r, 23, 0, 0x80000000U);
	REFUSED(&r, "initPid must be a positive integer");
	field(&r, 27, 1, 0);
	REFUSED(&r, "initStartTime must be a positive integer");
	field(&r, 27, 1, (1ULL << 53) + 1);
	REFUSED(&r, "initStartTime must be a positive integer");
	field(&r, 35, 1, 0);
	REFUSED(&r, "pidns must be a positive integer");
	field(&r, 43, 0, 9);
	REFUSED(&r, "stdioFd must be a file descriptor number with flag socket, else 0");

	/* exec without argv; 257 arguments */
	head(&r, UB_ZYGOTE_MODE_EXEC, 0, 1, 0);
	put_count(&r, 0);
	put32(&r, 0);
	put32(&r, 0);
	REFUSED(&r, "argv must be a non-empty array");
	head(&r, UB_ZYGOTE_MODE_EXEC, 0, 1, 0);
	put_count(&r, UB_ZYGOTE_MAX_ARGS + 1);
	for (int i = 0; i <= UB_ZYGOTE_MAX_ARGS; i++)
		put_str(&r, "a");
	put32(&r, 0);
	put32(&r, 0);
	REFUSED(&r, "argv has more than 256 entries");

	/* a string length past the frame, up to the largest (no overflow), a NUL */
	head(&r, UB_ZYGOTE_MODE_EXEC, 0, 1, 0);
	put_count(&r, 1);
	put32(&r, 0xffffffffU);
	put(&r, "x", 1);
	REFUSED(&r, "runs past");
	head(&r, UB_ZYGOTE_MODE_EXEC, 0, 1, 0);
	put_count(&r, 1);
	put32(&r, 3);
	put(&r, "a\0b", 3);
	put32(&r, 0);
	put32(&r, 0);
	REFUSED(&r, "holds a NUL");
	for (int i = 0; i < 2; i++) { /* no name, no '=' */
		head(&r, UB_ZYGOTE_MODE_EXEC, UB_ZYGOTE_SPAWN_ENV, 1, 0);
		put_count(&r, 1);
		put_str(&r, "x");
		put_count(&r, 1);
		put_str(&r, i ? "A" : "=c");
		put32(&r, 0);
		put32(&r, 0);
		REFUSED(&r, "env must be NAME=value strings with a name");
	}
	head(&r, UB_ZYGOTE_MODE_EXEC, 0, 1, 0);
	put_count(&r, 1);
	put_str(&r, "x");
	put_str(&r, "tmp");
	put32(&r, 0);
	REFUSED(&r, "cwd must be an absolute path");
	head(&r, UB_ZYGOTE_MODE_EXEC, 0, 1, 0);
	put_count(&r, 1);
	put_str(&r, "x");
	put32(&r, 0);
	put32(&r, 0xfffffff0U);
	put(&r, "abc", 3);
	REFUSED(&r, "stdin runs past the spawn record");
}

/* The events queued since the last call, as one NUL-terminated string per
 * frame in out (frames separated by '\n'); -1 for a malformed frame. */
static int drain(char *out, size_t cap)
{
	size_t off = 0, o = 0;

	while (off < outq.len) {
		if (off + UB_FRAME_HEADER > outq.len)
			return -1;
		uint32_t len = ub_frame_len((const unsigned char *)outq.p + off);

		if (off + UB_FRAME_HEADER + len > outq.len || ub_json_validate(outq.p + off + UB_FRAME_HEADER, len) < 0 ||
		    o + len + 2 > cap)
			return -1;
		memcpy(out + o, outq.p + off + UB_FRAME_HEADER, len);
		o += len;
		out[o++] = '\n';
		off += UB_FRAME_HEADER + len;
	}
	out[o] = '\0';
	ub_buf_free(&outq);
	return 0;
}

/* The one frame queued since the last call, its body in *body (the queue
 * keeps it until ub_buf_free); -1 if there is not exactly one. */
static int one_frame(const unsigned char **body, size_t *len)
{
	if (outq.len < UB_FRAME_HEADER)
		return -1;
	*len = ub_frame_len((const unsigned char *)outq.p);
	*body = (const unsigned char *)outq.p + UB_FRAME_HEADER;
	return outq.len == UB_FRAME_HEADER + *len ? 0 : -1;
}

/* An error record, read back as the broker reads it: -1 if its lengths do
 * not add up to the frame. */
struct error_record {
	unsigned long long id;
	int flags, err;
	char s[4][UB_ZYGOTE_ERROR_MAX_STRING + 1]; /* code, native, step, message */
};

static int read_error(struct error_record *e)
{
	const unsigned char *b;
	size_t len, off = UB_ZYGOTE_ERROR_HEADER;

	if (one_frame(&b, &len) < 0 || len < UB_ZYGOTE_ERROR_HEADER || b[0] != UB_ZYGOTE_FRAME_ERROR)
		return -1;
	e->id = ub_be64_get(b + 1);
	e->flags = b[9];
	e->err = (int)ub_frame_len(b + 10);
	for (int i = 0; i < 4; i++) {
		size_t n;

		if (off + 2 > len)
			return -1;
		n = (size_t)b[off] << 8 | b[off + 1];
		if (off + 2 + n > len || n > UB_ZYGOTE_ERROR_MAX_STRING)
			return -1;
		memcpy(e->s[i], b + off + 2, n);
		e->s[i][n] = '\0';
		off += 2 + n;
	}
	ub_buf_free(&outq);
	return off == len ? 0 : -1;
}

static void test_events(void)
{
	static struct req r;
	static struct error_record e;
	static char longer[3000];
	char out[4096];
	const unsigned char *b;
	size_t len;

	memset(&r, 0, sizeof(r));
	r.id = 7;
	emit_error_raw(1, 7, "E_BAD_REQUEST", "E_BAD_REQUEST", "parse \"x\"\n", EINVAL, "tab\there \xff");
	CHECK(read_error(&e) == 0 && e.id == 7 && e.flags == 0 && e.err == EINVAL && !strcmp(e.s[0], "E_BAD_REQUEST") &&
	      !strcmp(e.s[1], "E_BAD_REQUEST") && !strcmp(e.s[2], "parse \"x\"\n") && !strcmp(e.s[3], "tab\there \xff"),
	      "error record: the strings as given, raw");

	emit_error_raw(0, 0, "E_BAD_REQUEST", "E_BAD_REQUEST", "read frame", EMSGSIZE, "too large");
	CHECK(read_error(&e) == 0 && e.flags == UB_ZYGOTE_ERROR_NO_ID && e.err == EMSGSIZE, "error without an id");

	emit_error_raw(1, 1, "E_SPAWN", "E_SPAWN", "x", -5, "");
	CHECK(read_error(&e) == 0 && e.err == -5 && !strcmp(e.s[3], ""), "a negative errno, an empty message");

	/* a long message is cut at the limit, at a character boundary */
	memset(longer, 'a', sizeof(longer) - 1);
	memcpy(longer + UB_ZYGOTE_ERROR_MAX_STRING - 1, "\xc3\xa9", 2);
	emit_error_raw(1, 1, "E_SPAWN", "E_SPAWN", longer, 0, longer);
	CHECK(read_error(&e) == 0 && strlen(e.s[2]) == UB_ZYGOTE_ERROR_MAX_STRING - 1 && strlen(e.s[3]) == UB_ZYGOTE_ERROR_MAX_STRING - 1,
	      "long strings cut before the split character: %zu", strlen(e.s[2]));

	emit_native_error(&r, "E_EXEC", "execve(/x)", ENOENT);
	CHECK(read_error(&e) == 0 && !strcmp(e.s[0], "E_NOT_FOUND") && !strcmp(e.s[1], "E_EXEC") && e.err == ENOENT,
	      "E_EXEC with ENOENT is E_NOT_FOUND: %s", e.s[0]);

	emit_started(0x0102030405060708ULL, 4242, 1, 0xa0b0c0d0e0f00112ULL);
	CHECK(one_frame(&b, &len) == 0 && len == UB_ZYGOTE_STARTED_LEN && b[0] == UB_ZYGOTE_FRAME_STARTED &&
	      ub_be64_get(b + 1) == 0x0102030405060708ULL && ub_frame_len(b + 9) == 4242 && ub_frame_len(b + 13) == 1 &&
	      ub_be64_get(b + 17) == 0xa0b0c0d0e0f00112ULL, "started record");
	ub_buf_free(&outq);

	r.have_status = 1;
	r.status = 3 << 8; /* exited 3 */
	r.cpid = 99;
	ub_buf_append(&r.out.data, "hi", 2);
	r.fields = strdup("{\"rlimits\":\"ok\"}");
	emit_exit(&r);
	CHECK(drain(out, sizeof(out)) == 0 && strstr(out, "\"event\":\"exit\",\"pid\":99,\"code\":3,\"signal\":null") &&
	      strstr(out, "\"stdoutBase64\":\"aGk=\"") && strstr(out, "\"fields\":{\"rlimits\":\"ok\"}"), "exit event: %s", out);
	r.status = SIGKILL;
	emit_exit(&r);
	CHECK(drain(out, sizeof(out)) == 0 && strstr(out, "\"code\":null,\"signal\":\"SIGKILL\""), "killed: %s", out);
	ub_buf_free(&r.out.data);
	free(r.fields);
}

static void test_data_frames(void)
{
	static const char in[] = "\x01\x00\x00\x00\x00\x00\x00\x01\x02" "\x00\xff{";
	unsigned long long id = 0;
	const char *data = NULL;
	size_t n = 0;
	uint32_t len;

	CHECK(parse_data_frame(in, sizeof(in) - 1, UB_ZYGOTE_FRAME_STDIN, &id, &data, &n) == 0 && id == 258 && n == 3 &&
	      !memcmp(data, "\x00\xff{", 3));
	CHECK(parse_data_frame(in, UB_ZYGOTE_DATA_HEADER, UB_ZYGOTE_FRAME_STDIN, &id, &data, &n) == 0 && n == 0);
	CHECK(parse_data_frame(in, UB_ZYGOTE_DATA_HEADER - 1, UB_ZYGOTE_FRAME_STDIN, &id, &data, &n) < 0);
	CHECK(parse_data_frame(in, sizeof(in) - 1, UB_ZYGOTE_FRAME_STDOUT, &id, &data, &n) < 0);
	CHECK(parse_data_frame("{}", 2, UB_ZYGOTE_FRAME_STDIN, &id, &data, &n) < 0);

	emit_data(UB_ZYGOTE_FRAME_STDOUT, 0x0102030405060708ULL, "\0dns", 4);
	len = outq.len >= UB_FRAME_HEADER ? ub_frame_len((const unsigned char *)outq.p) : 0;
	CHECK(outq.len == UB_FRAME_HEADER + UB_ZYGOTE_DATA_HEADER + 4 && len == UB_ZYGOTE_DATA_HEADER + 4);
	CHECK(outq.len > UB_FRAME_HEADER && parse_data_frame(outq.p + UB_FRAME_HEADER, len, UB_ZYGOTE_FRAME_STDOUT, &id, &data, &n) == 0 &&
	      id == 0x0102030405060708ULL && n == 4 && !memcmp(data, "\0dns", 4));
	ub_buf_free(&outq);
}

/* eof and kill: the 9-byte header alone, nothing after it */
static void test_control_frames(void)
{
	static const char eof[] = "\x03\x00\x00\x00\x00\x00\x00\x01\x02", kill[] = "\x04\xff\x00\x00\x00\x00\x00\x00\x07";
	unsigned long long id = 0;
	int kind = 0;

	CHECK(parse_control_frame(eof, UB_ZYGOTE_DATA_HEADER, &kind, &id) == 0 && kind == UB_ZYGOTE_FRAME_EOF && id == 258);
	CHECK(parse_control_frame(kill, UB_ZYGOTE_DATA_HEADER, &kind, &id) == 0 && kind == UB_ZYGOTE_FRAME_KILL &&
	      id == 0xff00000000000007ULL);
	CHECK(parse_control_frame(eof, UB_ZYGOTE_DATA_HEADER - 1, &kind, &id) < 0, "shorter than the header");
	CHECK(parse_control_frame("\x03\0\0\0\0\0\0\0\x01x", UB_ZYGOTE_DATA_HEADER + 1, &kind, &id) < 0, "bytes after the header");
	CHECK(parse_control_frame("\x01\0\0\0\0\0\0\0\x01", UB_ZYGOTE_DATA_HEADER, &kind, &id) < 0, "a stdin frame is no control frame");
	CHECK(parse_control_frame("\x05\0\0\0\0\0\0\0\x01", UB_ZYGOTE_DATA_HEADER, &kind, &id) < 0, "an unknown kind");
}

int main(int argc, char **argv)
{
	selftest_init(argc, argv);
	test_control_frames();
	test_spawn();
	test_refused();
	test_events();
	test_data_frames();
	return selftest_done();
}
