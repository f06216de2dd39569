/*
 * upcall-request-key-selftest: unit test of the handler's pure parts
 * (/proc/keys and /proc/<pid>/stat parsing, the command line, base64, the
 * request JSON and the broker's decision).  No kernel key is needed; the
 * integration test tests/integration/request-key.test.ts covers the rest.
 *
 * Prints "FAIL ..." lines (every check with -v), then "N passed, N failed".
 */
#define URK_NO_MAIN
#include "request-key/upcall-request-key.c"

#include "selftest.h"

/* An exact-size copy of the string s, its length in *len. */
static char *exact_str(const char *s, size_t *len)
{
	*len = strlen(s);
	return exact(s, *len);
}

static void test_int32(void)
{
	int32_t v;

	CHECK(urk_parse_int32("123", &v) == 0 && v == 123);
	CHECK(urk_parse_int32("-7", &v) == 0 && v == -7);
	CHECK(urk_parse_int32("2147483647", &v) == 0 && v == INT32_MAX);
	CHECK(urk_parse_int32("2147483648", &v) < 0 && errno == ERANGE);
	CHECK(urk_parse_int32("", &v) < 0);
	CHECK(urk_parse_int32("12a", &v) < 0);
	CHECK(urk_parse_int32(" 1", &v) < 0);
	CHECK(urk_parse_int32("+1", &v) < 0);
	CHECK(urk_parse_int32(NULL, &v) < 0);
}

static const char PROC_KEYS[] =
	"027abab6 I------     1 perm 1f0b0000     0     0 keyring   .builtin_trusted_keys: empty\n"
	"1585281b I--Q-N-     2   7s 3f010000     0     0 user      ubexp282631761:two\n"
	"01e1c542 I------    12 perm 1b010000     0     0 .request_ key:1585281b pid:2850 ci:1\n"
	"01e1c543 I------    12 perm 1b010000     0     0 .request_ key:1585281b\n"
	"01e1c544 I------    12 perm 1b010000     0     0 .request_ key:zz pid:1 ci:1\n"
	"7fffffff I------     1 perm 1b010000     0     0 .request_ key:7ffffffe pid:4194304 ci:4096";

static void test_find_auth(void)
{
	struct urk_auth_info a;
	size_t len;
	char *buf = exact_str(PROC_KEYS, &len);

	memset(&a, 0, sizeof(a));
	CHECK(urk_find_auth(buf, len, 0x01e1c542, &a) == 0);
	CHECK(a.target == 0x1585281b && a.pid == 2850 && a.callout_len == 1);
	/* last line without a newline, large values */
	CHECK(urk_find_auth(buf, len, 0x7fffffff, &a) == 0);
	CHECK(a.target == 0x7ffffffe && a.pid == 4194304 && a.callout_len == 4096);
	/* a negative auth key shows no pid/ci: refused */
	CHECK(urk_find_auth(buf, len, 0x01e1c543, &a) < 0 && errno == EBADMSG);
	CHECK(urk_find_auth(buf, len, 0x01e1c544, &a) < 0 && errno == EBADMSG);
	/* not an auth key */
	CHECK(urk_find_auth(buf, len, 0x1585281b, &a) < 0 && errno == EBADMSG);
	/* absent */
	CHECK(urk_find_auth(buf, len, 0x01e1c541, &a) < 0 && errno == ENOENT);
	/* a serial whose hex is a prefix of another must not match it */
	CHECK(urk_find_auth(buf, len, 0x027aba, &a) < 0 && errno == ENOENT);
	CHECK(urk_find_auth(buf, 0, 0x01e1c542, &a) < 0 && errno == ENOENT);
	free(buf);
	/* trailing garbage after ci is refused */
	buf = exact_str("01e1c542 I------    12 perm 1b010000     0     0 .request_ key:1 pid:2 ci:3 x\n", &len);
	CHECK(urk_find_auth(buf, len, 0x01e1c542, &a) < 0 && errno == EBADMSG);
	free(buf);
	buf = exact_str("01e1c542 I------    12 perm 1b010000     0     0 .request_ key:1 pid:0 ci:3\n", &len);
	CHECK(urk_find_auth(buf, len, 0x01e1c542, &a) < 0);
	free(buf);
}

/* A pipe holding text, its write end closed: what read(2) gives is the text, then EOF. */
static int pipe_of(const char *text)
{
	int p[2];
	ssize_t w;

	if (pipe(p) < 0)
		return -1;
	w = write(p[1], text, strlen(text));
	close(p[1]);
	if (w != (ssize_t)strlen(text)) {
		close(p[0]);
		return -1;
	}
	return p[0];
}

/* urk_find_auth_fd with a buffer of cap bytes (a few lines: reads carry partial lines over). */
static int find_fd(const char *text, size_t cap, int32_t serial, struct urk_auth_info *a, size_t *left)
{
	char buf[4096], rest[4096];
	int fd = pipe_of(text), r, e;
	ssize_t n;

	if (fd < 0 || cap > sizeof(buf))
		return -2;
	r = urk_find_auth_fd(fd, buf, cap, serial, a);
	e = errno;
	n = read(fd, rest, sizeof(rest));
	*left = n > 0 ? (size_t)n : 0;
	close(fd);
	errno = e;
	return r;
}

static void test_find_auth_fd(void)
{
	struct urk_auth_info a;
	size_t left, caps[] = { 100, 128, 200, 4096 };

	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		memset(&a, 0, sizeof(a));
		CHECK(find_fd(PROC_KEYS, caps[i], 0x01e1c542, &a, &left) == 0 &&
		      a.target == 0x1585281b && a.pid == 2850 && a.callout_len == 1, "cap %zu: a middle line", caps[i]);
		/* the last line, without a newline: found at EOF */
		CHECK(find_fd(PROC_KEYS, caps[i], 0x7fffffff, &a, &left) == 0 &&
		      a.target == 0x7ffffffe && a.pid == 4194304 && left == 0, "cap %zu: the last line", caps[i]);
		CHECK(find_fd(PROC_KEYS, caps[i], 0x01e1c541, &a, &left) < 0 && errno == ENOENT && left == 0,
		      "cap %zu: absent", caps[i]);
		CHECK(find_fd(PROC_KEYS, caps[i], 0x01e1c543, &a, &left) < 0 && errno == EBADMSG,
		      "cap %zu: a negative auth key", caps[i]);
	}
	/* reading stops at the line found: with a small buffer the rest stays unread */
	CHECK(find_fd(PROC_KEYS, 100, 0x1585281b + 0, &a, &left) < 0 && errno == EBADMSG && left > 0,
	      "stops at the line (not an auth key)");
	CHECK(find_fd(PROC_KEYS, 100, 0x01e1c542, &a, &left) == 0 && left > 0, "stops at the line");
	/* one line longer than the buffer */
	CHECK(find_fd(PROC_KEYS, 40, 0x01e1c542, &a, &left) < 0 && errno == EBADMSG, "a line over the buffer");
	CHECK(find_fd("", 100, 0x01e1c542, &a, &left) < 0 && errno == ENOENT, "empty");
	CHECK(urk_find_auth_fd(-1, (char[8]){ 0 }, 8, 1, &a) < 0 && errno == EBADF, "read's errno");
}

static void test_stat(void)
{
	unsigned long long st = 0;
	size_t len;
	char *buf;

	buf = exact_str("2850 (keyctl) D 2847 2850 1 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456789 5000 100", &len);
	CHECK(ub_proc_stat_field(buf, len, UB_STAT_START_TIME, &st) == 0 && st == 123456789ULL);
	free(buf);
	buf = exact_str("7 (a) b) (c) S 1 7 7 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 42 5000 100\n", &len);
	CHECK(ub_proc_stat_field(buf, len, UB_STAT_START_TIME, &st) == 0 && st == 42);
	free(buf);
	buf = exact_str("7 (x) S 1 2", &len);
	CHECK(ub_proc_stat_field(buf, len, UB_STAT_START_TIME, &st) < 0);
	free(buf);
	buf = exact_str("no paren here", &len);
	CHECK(ub_proc_stat_field(buf, len, UB_STAT_START_TIME, &st) < 0);
	free(buf);
}

static void test_describe(void)
{
	char a[] = "dns_resolver;0;0;3f010000;a:svc.example.com";
	char b[] = "user;1000;1000;3f010000;with;semicolons";
	char c[] = "user;1;2;3";
	char *t, *d;

	CHECK(urk_parse_describe(a, &t, &d) == 0 && !strcmp(t, "dns_resolver") && !strcmp(d, "a:svc.example.com"));
	CHECK(urk_parse_describe(b, &t, &d) == 0 && !strcmp(t, "user") && !strcmp(d, "with;semicolons"));
	CHECK(urk_parse_describe(c, &t, &d) < 0);
}

static void test_base64(void)
{
	const char *cases[][2] = { { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
				   { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" } };
	unsigned char *out;
	size_t n;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *e = ub_base64_encode_alloc((const unsigned char *)cases[i][0], strlen(cases[i][0]));
		CHECK(e && !strcmp(e, cases[i][1]));
		free(e);
		CHECK(ub_base64_decode_alloc(cases[i][1], strlen(cases[i][1]), &out, &n) == 0 && n == strlen(cases[i][0]) &&
		      memcmp(out, cases[i][0], n) == 0);
		free(out);
	}
	{
		unsigned char bin[256];
		for (int i = 0; i < 256; i++)
			bin[i] = (unsigned char)i;
		char *e = ub_base64_encode_alloc(bin, sizeof(bin));
		CHECK(ub_base64_decode_alloc(e, strlen(e), &out, &n) == 0 && n == 256 && memcmp(out, bin, 256) == 0);
		free(out);
		free(e);
	}
	CHECK(ub_base64_decode_alloc("Zm9", 3, &out, &n) < 0);
	CHECK(ub_base64_decode_alloc("Zm9!", 4, &out, &n) < 0);
	CHECK(ub_base64_decode_alloc("Zh==", 4, &out, &n) < 0);  /* stray bits */
	CHECK(ub_base64_decode_alloc("Z===", 4, &out, &n) < 0);
	CHECK(ub_base64_decode_alloc("=m9v", 4, &out, &n) < 0);
}

static void test_utf8(void)
{
	CHECK(ub_utf8_valid("plain", 5));
	CHECK(ub_utf8_valid("h\xc3\xa9", 3));
	CHECK(!ub_utf8_valid("\xc3", 1));
	CHECK(!ub_utf8_valid("\xc0\xaf", 2));          /* overlong */
	CHECK(!ub_utf8_valid("\xed\xa0\x80", 3));      /* surrogate */
	CHECK(ub_utf8_valid("a\0b", 3));            /* NUL is UTF-8: callers refusing it check themselves */
	CHECK(!ub_utf8_valid("\xff", 1));
}

static void test_params(void)
{
	struct urk_request r = { .key = 42, .op = "create", .type = "dns_resolver", .description = "a:x\"y",
				 .callout = "ipv4 list", .callout_len = 9, .requester_pid = 99,
				 .requester_start_time = 1234, .uid = 200000, .gid = 200000,
				 .thread_ring = 0, .process_ring = 0, .session_ring = 55, .timeout_ms = 2700 };
	char *p = urk_build_params(&r), *s = NULL;
	const char *v;
	size_t vl;

	CHECK(p && ub_json_validate(p, strlen(p)) == 0);
	CHECK(p && ub_json_get_string(p, strlen(p), "description", &s) == 0 && !strcmp(s, "a:x\"y"));
	free(s);
	s = NULL;
	CHECK(p && ub_json_get_string(p, strlen(p), "callout", &s) == 0 && !strcmp(s, "ipv4 list"));
	free(s);
	CHECK(p && ub_json_find(p, strlen(p), "requesterPid", &v, &vl) == 0 && vl == 2 && !memcmp(v, "99", 2));
	CHECK(p && ub_json_find(p, strlen(p), "uid", &v, &vl) == 0 && vl == 6 && !memcmp(v, "200000", 6));
	CHECK(p && ub_json_find(p, strlen(p), "keyrings", &v, &vl) == 0);
	free(p);

	/* binary callout goes as base64 */
	r.callout = "a\xff\0b";
	r.callout_len = 4;
	p = urk_build_params(&r);
	s = NULL;
	CHECK(p && ub_json_validate(p, strlen(p)) == 0);
	CHECK(p && ub_json_find(p, strlen(p), "callout", &v, &vl) < 0);
	CHECK(p && ub_json_get_string(p, strlen(p), "calloutBase64", &s) == 0 && !strcmp(s, "Yf8AYg=="));
	free(s);
	free(p);

	/* a description that is not UTF-8 is refused, not mangled */
	r.description = "bad\xff";
	CHECK(urk_build_params(&r) == NULL && errno == EILSEQ);
}

static int decide(const char *json, struct urk_decision *d)
{
	char why[200];
	size_t len;
	char *buf = exact_str(json, &len);
	int rc = urk_parse_decision(buf, len, d, why, sizeof(why));

	if (verbose)
		printf("     decide(%s) = %d %s\n", json, rc, rc ? why : "");
	free(buf);
	return rc;
}

static void test_decision(void)
{
	struct urk_decision d;

	CHECK(decide("{\"action\":\"instantiate\",\"payloadBase64\":\"MTAuMC4wLjEA\",\"expirySeconds\":300,\"context\":\"c-1\"}", &d) == 0);
	CHECK(d.action == URK_INSTANTIATE && d.payload_len == 9 && !memcmp(d.payload, "10.0.0.1", 9) && d.expiry == 300 &&
	      !strcmp(d.context, "c-1"));
	urk_decision_free(&d);
	CHECK(decide("{\"action\":\"instantiate\",\"payloadBase64\":\"\",\"expirySeconds\":null}", &d) == 0 &&
	      d.payload_len == 0 && d.expiry == 0);
	urk_decision_free(&d);
	CHECK(decide("{\"action\":\"reject\",\"errno\":61,\"timeoutSeconds\":60,\"reason\":\"nxdomain\"}", &d) == 0);
	CHECK(d.action == URK_REJECT && d.err == 61 && d.timeout == 60 && !strcmp(d.reason, "nxdomain"));
	CHECK(decide("{\"action\":\"negate\",\"timeoutSeconds\":5}", &d) == 0 && d.action == URK_NEGATE && d.timeout == 5);
	CHECK(decide("{\"action\":\"decline\",\"reason\":\"host\"}", &d) == 0 && d.action == URK_DECLINE);
	CHECK(decide("{\"action\":\"reject\",\"timeoutSeconds\":60}", &d) < 0);          /* no errno */
	CHECK(decide("{\"action\":\"reject\",\"errno\":0,\"timeoutSeconds\":60}", &d) < 0);
	CHECK(decide("{\"action\":\"reject\",\"errno\":61,\"timeoutSeconds\":-1}", &d) < 0);
	CHECK(decide("{\"action\":\"reject\",\"errno\":6.1,\"timeoutSeconds\":1}", &d) < 0);
	CHECK(decide("{\"action\":\"negate\"}", &d) < 0);
	CHECK(decide("{\"action\":\"instantiate\"}", &d) < 0);
	CHECK(decide("{\"action\":\"instantiate\",\"payloadBase64\":\"!!\"}", &d) < 0);
	CHECK(decide("{\"action\":\"explode\"}", &d) < 0);
	CHECK(decide("{\"payloadBase64\":\"AA==\"}", &d) < 0);
	CHECK(decide("[1,2]", &d) < 0);
	CHECK(decide("{\"action\":\"decline\",\"action\":\"instantiate\"}", &d) < 0);     /* duplicate: ambiguous */
	/* control characters in the reason are neutralised for the log */
	CHECK(decide("{\"action\":\"decline\",\"reason\":\"a\\nb\"}", &d) == 0 && !strcmp(d.reason, "a?b"));
}

static int args(struct urk_options *o, const char *line)
{
	char buf[1024], *argv[64], err[300];
	int argc = 0;

	snprintf(buf, sizeof(buf), "%s", line);
	for (char *t = strtok(buf, " "); t && argc < 63; t = strtok(NULL, " "))
		argv[argc++] = strcmp(t, "''") == 0 ? (char *)"" : t;
	argv[argc] = NULL;
	int rc = urk_parse_args(argc, argv, o, err, sizeof(err));
	if (verbose)
		printf("     args(%s) = %d %s\n", line, rc, rc ? err : "");
	return rc;
}

static void test_args(void)
{
	struct urk_options o;

	CHECK(args(&o, "urk create 12 user d:x '' 0 0 0 0 99") == 0);
	CHECK(o.timeout_ms == URK_DEFAULT_TIMEOUT_MS && o.socket == NULL && !strcmp(o.key, "12") &&
	      !strcmp(o.description, "d:x") && !strcmp(o.callout, "") && !strcmp(o.session_ring, "99"));
	CHECK(args(&o, "urk --socket /run/x.sock -t 500 -F 3 --fallback /sbin/key.dns_resolver -S -v create 1 t d c 0 0 0 0 0") == 0);
	CHECK(!strcmp(o.socket, "/run/x.sock") && o.timeout_ms == 500 && o.fail_timeout == 3 &&
	      !strcmp(o.fallback, "/sbin/key.dns_resolver") && o.strict && o.verbose == 1);
	/* a description that looks like an option is a positional */
	CHECK(args(&o, "urk create 1 user --socket c 0 0 0 0 0") == 0 && !strcmp(o.description, "--socket"));
	CHECK(args(&o, "urk create 1 user d c 0 0 0 0") < 0);             /* 9 positionals */
	CHECK(args(&o, "urk --timeout-ms 99 create 1 t d c 0 0 0 0 0") < 0);
	CHECK(args(&o, "urk --timeout-ms 60001 create 1 t d c 0 0 0 0 0") < 0);
	CHECK(args(&o, "urk --fallback key.dns_resolver create 1 t d c 0 0 0 0 0") < 0);
	CHECK(args(&o, "urk --bogus create 1 t d c 0 0 0 0 0") < 0);
	CHECK(args(&o, "urk --ping") == 0 && o.ping);
	CHECK(args(&o, "urk --ping extra") < 0);
	CHECK(args(&o, "urk --socket") < 0);
}

static void test_codes(void)
{
	CHECK(urk_errno_for_code("E_BUSY") == EAGAIN);
	CHECK(urk_errno_for_code("E_NS_NOT_OWNED") == EPERM);
	CHECK(urk_errno_for_code("E_WHATEVER") == URK_EKEYREJECTED);
	CHECK(!strcmp(urk_errno_name(ENODATA), "ENODATA"));
	CHECK(urk_errno_name(9999) == NULL);
}

int main(int argc, char **argv)
{
	selftest_init(argc, argv);
	test_int32();
	test_find_auth();
	test_find_auth_fd();
	test_stat();
	test_describe();
	test_base64();
	test_utf8();
	test_params();
	test_decision();
	test_args();
	test_codes();
	return selftest_done();
}
