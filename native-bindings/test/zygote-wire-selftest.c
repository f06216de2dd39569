/*
 * zygote-wire-selftest: the zygote's wire (zygote/wire.c) on its own: request
 * frames parsed as the zygote parses them (ub_json_validate, collect_members,
 * parse_request), hostile ones refused with the reason the broker sees,
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

/* Parse one request as handle_frame does: 0 and *a, or -1 and *why. */
static int parse(const char *body, struct spawn_args *a, const char **why)
{
	struct ub_json_span v[K_COUNT];
	size_t len = strlen(body);
	char *copy = exact(body, len);
	int rc;

	memset(v, 0, sizeof(v));
	memset(a, 0, sizeof(*a));
	*why = "";
	if (ub_json_validate(copy, len) < 0) {
		*why = "not JSON";
		rc = -1;
	} else {
		rc = collect_members(copy, len, v, why) < 0 || parse_request(v, a, why) < 0 ? -1 : 0;
	}
	/* the strings of *a are copies: the frame may go */
	free(copy);
	return rc;
}

#define BASE "\"id\":1,\"op\":\"spawn\",\"initPidfd\":7,\"initPid\":42,\"initStartTime\":1234,\"pidns\":4026531836,\"mode\":\"exec\",\"timeoutMs\":5000"

/* The request refused, with a reason that contains want. */
static void refused(int line, const char *body, const char *want)
{
	struct spawn_args a;
	const char *why;
	int rc = parse(body, &a, &why);

	check(rc < 0 && strstr(why, want) != NULL, line, "", "refused (%s): %s -> %s", want, body, rc < 0 ? why : "accepted");
	free_args(&a);
}
#define REFUSED(body, want) refused(__LINE__, body, want)

static void test_spawn(void)
{
	struct spawn_args a;
	const char *why = "";
	int rc;

	rc = parse("{" BASE ",\"argv\":[\"/bin/echo\",\"h\\u00e9\"],\"env\":{\"PATH\":\"/bin\",\"A\":\"b=c\"},"
		    "\"cwd\":\"/tmp\",\"stdinBase64\":\"aGk=\",\"outputCap\":100,\"host\":false}", &a, &why);
	CHECK(rc == 0, "full spawn: %s", why);
	CHECK(a.target.pid == 42 && a.target.start_time == 1234 && a.target.pidns_ino == 4026531836ULL && a.target.pidfd == -1);
	CHECK(a.broker_fd == 7, "initPidfd is the broker's fd number (taken later, by handle_frame): %d", a.broker_fd);
	CHECK(!a.target.host && a.builtin == BUILTIN_NONE && !a.stream);
	CHECK(a.argv && !strcmp(a.argv[0], "/bin/echo") && !strcmp(a.argv[1], "h\xc3\xa9") && !a.argv[2]);
	CHECK(a.envp && !strcmp(a.envp[0], "PATH=/bin") && !strcmp(a.envp[1], "A=b=c") && !a.envp[2]);
	CHECK(a.path && !strcmp(a.path, "/bin"));
	CHECK(a.cwd && !strcmp(a.cwd, "/tmp"));
	CHECK(a.input_len == 2 && !memcmp(a.input, "hi", 2));
	CHECK(a.timeout_ms == 5000 && a.output_cap == 100);
	free_args(&a);

	/* defaults: PATH, the output cap; whitespace around the object */
	rc = parse(" \n{" BASE ",\"argv\":[\"true\"]}\t", &a, &why);
	CHECK(rc == 0, "minimal spawn: %s", why);
	CHECK(a.envp && !strcmp(a.envp[0], "PATH=" UB_CTX_DEFAULT_PATH) && a.path && !a.envp[1]);
	CHECK(a.output_cap == UB_ZYGOTE_DEFAULT_OUTPUT_CAP && !a.cwd && !a.input);
	free_args(&a);

	/* builtins need no argv */
	rc = parse("{\"id\":2,\"op\":\"spawn\",\"initPidfd\":0,\"initPid\":1,\"initStartTime\":1,\"pidns\":1,\"mode\":\"builtin\","
		    "\"builtin\":\"netrelay\",\"stream\":true,\"host\":true,\"timeoutMs\":1}", &a, &why);
	CHECK(rc == 0, "builtin: %s", why);
	CHECK(a.builtin == BUILTIN_NETRELAY && a.stream && a.target.host);
	free_args(&a);
}

static void test_refused(void)
{
	char big[8192];
	size_t n;

	REFUSED("[1]", "a request is a JSON object");
	REFUSED("{" BASE ",\"argv\":[\"x\"", "not JSON");
	REFUSED("{" BASE ",\"argv\":[\"x\"],\"shell\":true}", "unknown member");
	REFUSED("{" BASE ",\"argv\":[\"x\"],\"argv\":[\"y\"]}", "duplicate member");
	REFUSED("{" BASE "}", "argv must be a non-empty array");
	REFUSED("{" BASE ",\"argv\":[]}", "argv must be a non-empty array");
	REFUSED("{" BASE ",\"argv\":\"x\"}", "argv must be an array of strings");
	REFUSED("{" BASE ",\"argv\":[1]}", "argv must be an array of strings");
	REFUSED("{" BASE ",\"argv\":[\"\\u0000\"]}", "argv must be an array of strings");
	REFUSED("{" BASE ",\"argv\":[\"x\"],\"env\":{\"A=B\":\"c\"}}", "env must map names");
	REFUSED("{" BASE ",\"argv\":[\"x\"],\"env\":{\"\":\"c\"}}", "env must map names");
	REFUSED("{" BASE ",\"argv\":[\"x\"],\"env\":[\"A=b\"]}", "env must be an object");
	REFUSED("{" BASE ",\"argv\":[\"x\"],\"cwd\":\"tmp\"}", "cwd must be an absolute path");
	REFUSED("{" BASE ",\"argv\":[\"x\"],\"stdinBase64\":\"aGk\"}", "stdinBase64 is not valid base64");
	REFUSED("{" BASE ",\"argv\":[\"x\"],\"stdinBase64\":\"aGl=\"}", "stdinBase64 is not valid base64");
	REFUSED("{" BASE ",\"argv\":[\"x\"],\"outputCap\":8388609}", "outputCap must be an integer");
	REFUSED("{" BASE ",\"argv\":[\"x\"],\"eof\":true}", "unknown member"); /* eof is a binary frame */
	REFUSED("{" BASE ",\"argv\":[\"x\"],\"dataBase64\":\"\"}", "unknown member");
	REFUSED("{" BASE ",\"argv\":[\"x\"],\"host\":1}", "host must be a boolean");
	REFUSED("{" BASE ",\"argv\":[\"x\"],\"builtin\":\"netrelay\"}", "builtin is for mode \"builtin\"");
	REFUSED("{\"id\":1,\"op\":\"spawn\",\"initPidfd\":3,\"initPid\":1,\"initStartTime\":1,\"pidns\":1,\"mode\":\"builtin\",\"builtin\":\"sh\",\"timeoutMs\":1}",
		"unknown builtin");
	/* init's pidfd: the broker's fd number, required (init is never found by its pid) */
	REFUSED("{\"id\":1,\"op\":\"spawn\",\"initPid\":1,\"initStartTime\":1,\"pidns\":1,\"mode\":\"exec\",\"argv\":[\"x\"],\"timeoutMs\":1}",
		"initPidfd must be a file descriptor number");
	REFUSED("{\"id\":1,\"op\":\"spawn\",\"initPidfd\":-1,\"initPid\":1,\"initStartTime\":1,\"pidns\":1,\"mode\":\"exec\",\"argv\":[\"x\"],\"timeoutMs\":1}",
		"initPidfd must be a file descriptor number");
	REFUSED("{\"id\":1,\"op\":\"spawn\",\"initPidfd\":2147483648,\"initPid\":1,\"initStartTime\":1,\"pidns\":1,\"mode\":\"exec\",\"argv\":[\"x\"],\"timeoutMs\":1}",
		"initPidfd must be a file descriptor number");
	REFUSED("{\"id\":1,\"op\":\"spawn\",\"initPidfd\":\"5\",\"initPid\":1,\"initStartTime\":1,\"pidns\":1,\"mode\":\"exec\",\"argv\":[\"x\"],\"timeoutMs\":1}",
		"initPidfd must be a file descriptor number");
	REFUSED("{" BASE ",\"argv\":[\"x\"],\"initPidfd\":8}", "duplicate member");
	REFUSED("{\"id\":1,\"op\":\"spawn\",\"initPidfd\":3,\"initPid\":0,\"initStartTime\":1,\"pidns\":1,\"mode\":\"exec\",\"argv\":[\"x\"],\"timeoutMs\":1}",
		"initPid must be a positive integer");
	REFUSED("{\"id\":1,\"op\":\"spawn\",\"initPidfd\":3,\"initPid\":-1,\"initStartTime\":1,\"pidns\":1,\"mode\":\"exec\",\"argv\":[\"x\"],\"timeoutMs\":1}",
		"initPid must be a positive integer");
	REFUSED("{\"id\":1,\"op\":\"spawn\",\"initPidfd\":3,\"initPid\":2147483648,\"initStartTime\":1,\"pidns\":1,\"mode\":\"exec\",\"argv\":[\"x\"],\"timeoutMs\":1}",
		"initPid must be a positive integer");
	REFUSED("{\"id\":1,\"op\":\"spawn\",\"initPidfd\":3,\"initPid\":1,\"initStartTime\":1.5,\"pidns\":1,\"mode\":\"exec\",\"argv\":[\"x\"],\"timeoutMs\":1}",
		"initStartTime must be a positive integer");
	REFUSED("{\"id\":1,\"op\":\"spawn\",\"initPidfd\":3,\"initPid\":1,\"initStartTime\":1,\"mode\":\"exec\",\"argv\":[\"x\"],\"timeoutMs\":1}",
		"pidns must be a positive integer");
	REFUSED("{\"id\":1,\"op\":\"spawn\",\"initPidfd\":3,\"initPid\":1,\"initStartTime\":1,\"pidns\":1,\"mode\":\"shell\",\"argv\":[\"x\"],\"timeoutMs\":1}",
		"mode must be");
	REFUSED("{\"id\":1,\"op\":\"spawn\",\"initPidfd\":3,\"initPid\":1,\"initStartTime\":1,\"pidns\":1,\"mode\":\"exec\",\"argv\":[\"x\"],\"timeoutMs\":0}",
		"timeoutMs must be an integer in 1..3600000");
	REFUSED("{\"id\":1,\"op\":\"spawn\",\"initPidfd\":3,\"initPid\":1,\"initStartTime\":1,\"pidns\":1,\"mode\":\"exec\",\"argv\":[\"x\"],\"timeoutMs\":3600001}",
		"timeoutMs must be an integer in 1..3600000");

	/* 257 arguments */
	n = (size_t)snprintf(big, sizeof(big), "{" BASE ",\"argv\":[");
	for (int i = 0; i <= UB_ZYGOTE_MAX_ARGS; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"a\"", i ? "," : "");
	snprintf(big + n, sizeof(big) - n, "]}");
	REFUSED(big, "argv has more than 256 entries");
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
