/*
 * ub-client-selftest: unit test of ub-client's JSON scanner, response parser
 * and framing.  Framing is exercised over socketpairs (a forked child plays
 * the broker where timing matters) and a real listening socket; no broker is
 * needed.  Every input is copied into a buffer of exactly its size, so an
 * over-read shows up under valgrind or -fsanitize=address.
 *
 *   ub-client-selftest [-v]
 *
 * Prints "FAIL ..." lines (every check with -v), then "N passed, N failed" as
 * its last line.  Exit status 0 only if nothing failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ub-client.h"

#include "selftest.h"

static int validate(const char *s, size_t len)
{
	char *p = exact(s, len);
	int r = ub_json_validate(p, len);

	free(p);
	return r;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ */

static void test_validate(void)
{
	static const char *const good[] = {
		"{}", "[]", "\"\"", "0", "-0", "12", "-0.5e+10", "1E5", "1.25e-3", "true", "false", "null",
		" \n\t\r{\"a\":[1,2,{\"b\":null}],\"c\":\"\\u00e9\\ud83d\\ude00\"} \n",
		"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
		"\"\\ud800\"",                       /* lone surrogate: valid syntax */
		"\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", /* raw UTF-8 */
		"[[],{},\"}{][\",\"\\\"]\"]",
		"{\"\":0}",
	};
	static const char *const bad[] = {
		"", " ", "{", "}", "[", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "[1,]", "[,1]", "[1 2]",
		"{\"a\" 1}", "{a:1}", "{'a':1}", "01", "-01", "1.", ".5", "-", "1e", "1e+", "+1", "0x10",
		"NaN", "Infinity", "tru", "nul", "fals", "truee", "\"abc", "\"\\x\"", "\"\\u12\"",
		"\"\\u12g4\"", "\"\\", "\"\\u\"", "\"a\tb\"", "\"a\nb\"", "\"\xff\"", "\"\xc0\x80\"",
		"\"\xc3\"", "\"\xe2\x82\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xf8\x88\x80\x80\x80\"",
		"\"\x80\"", "{} {}", "{}x", "[] ,", "{\"a\":1}}", "[1]]", "\xef\xbb\xbf{}",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK(validate(good[i], strlen(good[i])) == 0, "valid JSON accepted: %s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(validate(bad[i], strlen(bad[i])) < 0 && errno == EBADMSG,
		      "invalid JSON refused: [%s]", bad[i]);

	/* embedded NUL, and lengths that cut the text */
	CHECK(validate("\"a\0b\"", 5) < 0, "raw NUL in a string refused");
	CHECK(validate("{}\0", 3) < 0, "NUL after the value refused");
	CHECK(validate("truex", 4) == 0, "length bounds the input (true)");
	CHECK(validate("[1]", 2) < 0, "length bounds the input ([1)");
	CHECK(validate("\"\\u0041\"", 7) < 0, "escape cut by the length");
	CHECK(ub_json_validate(NULL, 0) < 0, "NULL refused");
}

static char *nest(const char *open, const char *close, const char *inner, int depth)
{
	size_t lo = strlen(open), lc = strlen(close), li = strlen(inner);
	char *s = malloc(depth * (lo + lc) + li + 1), *p = s;

	if (!s)
		abort();
	for (int i = 0; i < depth; i++, p += lo)
		memcpy(p, open, lo);
	memcpy(p, inner, li);
	p += li;
	for (int i = 0; i < depth; i++, p += lc)
		memcpy(p, close, lc);
	*p = '\0';
	return s;
}

static void test_nesting(void)
{
	char *s;

	s = nest("[", "]", "1", UB_JSON_MAX_DEPTH);
	CHECK(validate(s, strlen(s)) == 0, "arrays nested %d deep accepted", UB_JSON_MAX_DEPTH);
	free(s);
	s = nest("[", "]", "1", UB_JSON_MAX_DEPTH + 1);
	CHECK(validate(s, strlen(s)) < 0, "arrays nested %d deep refused", UB_JSON_MAX_DEPTH + 1);
	free(s);
	s = nest("{\"a\":", "}", "{}", UB_JSON_MAX_DEPTH - 1);
	CHECK(validate(s, strlen(s)) == 0, "objects nested %d deep accepted", UB_JSON_MAX_DEPTH);
	free(s);
	s = nest("{\"a\":", "}", "{}", UB_JSON_MAX_DEPTH);
	CHECK(validate(s, strlen(s)) < 0, "objects nested %d deep refused", UB_JSON_MAX_DEPTH + 1);
	free(s);

	/* a million open brackets, closed or not: refused, no stack overflow */
	s = nest("[", "", "", 1000000);
	CHECK(validate(s, strlen(s)) < 0, "1e6 unclosed '[' refused");
	free(s);
	s = nest("[", "]", "", 1000000);
	CHECK(validate(s, strlen(s)) < 0, "1e6 nested arrays refused");
	free(s);
	s = nest("{\"a\":", "}", "1", 300000);
	CHECK(validate(s, strlen(s)) < 0, "3e5 nested objects refused");
	{
		const char *v;
		size_t vl;

		CHECK(ub_json_find(s, strlen(s), "a", &v, &vl) < 0 && errno == EBADMSG,
		      "find in a too-deep object refused");
	}
	free(s);

	/* deep nesting inside a response's result */
	{
		char *inner = nest("[", "]", "", UB_JSON_MAX_DEPTH);
		char buf[4096];
		struct ub_response *r;

		snprintf(buf, sizeof(buf), "{\"v\":1,\"id\":1,\"ok\":true,\"result\":%s}", inner);
		CHECK(ub_parse_response(buf, strlen(buf), 1, &r, NULL) < 0 && errno == EPROTO,
		      "response with result nested too deep refused");
		free(inner);
	}
}

static void expect_decode(int line, const char *tok, const char *want)
{
	char *p = exact(tok, strlen(tok)), *out = (char *)"x";
	int r = ub_json_decode_string(p, strlen(tok), &out);

	if (want)
		check(r == 0 && out && strcmp(out, want) == 0, line, "", "decode %s", tok);
	else
		check(r < 0 && errno == EBADMSG && out == NULL, line, "", "decode %s refused", tok);
	free(out == (char *)"x" ? NULL : out);
	free(p);
}

static void test_decode(void)
{
	expect_decode(__LINE__, "\"\"", "");
	expect_decode(__LINE__, "\"abc\"", "abc");
	expect_decode(__LINE__, "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "a\"b\\c/d\b\f\n\r\t");
	expect_decode(__LINE__, "\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac");
	expect_decode(__LINE__, "\"\\u007f\\u0080\\u07ff\\u0800\\uffff\"",
		      "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf");
	expect_decode(__LINE__, "\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80");
	expect_decode(__LINE__, "\"\\uD83D\\uDE00x\"", "\xf0\x9f\x98\x80x");
	expect_decode(__LINE__, "\"\\ud800\\udc00\"", "\xf0\x90\x80\x80");
	expect_decode(__LINE__, "\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf");
	expect_decode(__LINE__, "\"caf\xc3\xa9\xf0\x9f\x98\x80\"", "caf\xc3\xa9\xf0\x9f\x98\x80");
	expect_decode(__LINE__, "\"\\ud83d\"", NULL);          /* lone high surrogate */
	expect_decode(__LINE__, "\"\\ud83dx\"", NULL);
	expect_decode(__LINE__, "\"\\ud83d\\ud83d\"", NULL);   /* high + high */
	expect_decode(__LINE__, "\"\\ud83d\\n\"", NULL);
	expect_decode(__LINE__, "\"\\ude00\"", NULL);          /* lone low surrogate */
	expect_decode(__LINE__, "\"\\ude00\\ud83d\"", NULL);   /* reversed pair */
	expect_decode(__LINE__, "\"a\\u0000b\"", NULL);        /* U+0000 is no C string */
	expect_decode(__LINE__, "\"abc", NULL);
	expect_decode(__LINE__, "\"abc\"x", NULL);
	expect_decode(__LINE__, "abc", NULL);
	expect_decode(__LINE__, "\"", NULL);
	expect_decode(__LINE__, "\"\\u00e\"", NULL);
	expect_decode(__LINE__, "\"\\ud83d\\ude0\"", NULL);
	expect_decode(__LINE__, "\"\xed\xb0\x80\"", NULL);    /* raw surrogate in UTF-8 */
}

static void test_find(void)
{
	const char *doc = " {\"x\":{\"id\":\"nested\"},\"a\":\"}{\\\"\",\"n\":-12.5e1,\"id\":\"r-1\","
			  "\"arr\":[1,{\"id\":2}],\"t\":true} ";
	char *p = exact(doc, strlen(doc)), *s = NULL;
	const char *v;
	size_t vl;

	CHECK(ub_json_get_string(p, strlen(doc), "id", &s) == 0 && s && strcmp(s, "r-1") == 0,
	      "top-level id found, nested ones ignored");
	free(s);
	CHECK(ub_json_find(p, strlen(doc), "n", &v, &vl) == 0 && vl == 7 && memcmp(v, "-12.5e1", 7) == 0,
	      "number span");
	CHECK(ub_json_find(p, strlen(doc), "arr", &v, &vl) == 0 && vl == strlen("[1,{\"id\":2}]") &&
	      memcmp(v, "[1,{\"id\":2}]", vl) == 0, "array span");
	CHECK(ub_json_find(p, strlen(doc), "x", &v, &vl) == 0 && vl == strlen("{\"id\":\"nested\"}"),
	      "object span");
	CHECK(ub_json_find(p, strlen(doc), "missing", &v, &vl) < 0 && errno == ENOENT, "missing key: ENOENT");
	CHECK(ub_json_get_string(p, strlen(doc), "t", &s) < 0 && errno == EBADMSG && !s, "not a string: EBADMSG");
	CHECK(ub_json_get_string(p, strlen(doc), "i", &s) < 0 && errno == ENOENT, "prefix of a key is no match");
	CHECK(ub_json_get_string(p, strlen(doc), "idx", &s) < 0 && errno == ENOENT, "longer key is no match");
	free(p);

	{
		const char *d = "{\"\\u0069d\":\"esc\"}";

		p = exact(d, strlen(d));
		CHECK(ub_json_get_string(p, strlen(d), "id", &s) == 0 && strcmp(s, "esc") == 0,
		      "escaped member name matches");
		free(s);
		free(p);
	}
	{
		const char *d = "{\"id\":\"a\",\"x\":1,\"\\u0069d\":\"b\"}";

		p = exact(d, strlen(d));
		CHECK(ub_json_get_string(p, strlen(d), "id", &s) < 0 && errno == EBADMSG,
		      "duplicate member refused");
		free(p);
	}
	{
		static const char *const notobj[] = { "[\"id\"]", "\"id\"", "1", "{\"id\":\"a\"", "{\"id\":\"a\"}x",
						      "{\"id\" \"a\"}", "" };

		for (size_t i = 0; i < sizeof(notobj) / sizeof(notobj[0]); i++) {
			p = exact(notobj[i], strlen(notobj[i]));
			CHECK(ub_json_find(p, strlen(notobj[i]), "id", &v, &vl) < 0 && errno == EBADMSG,
			      "find in non-object/malformed refused: [%s]", notobj[i]);
			free(p);
		}
	}
	CHECK(ub_json_find("{}", 2, "id", &v, &vl) < 0 && errno == ENOENT, "empty object: ENOENT");
	CHECK(ub_json_find(NULL, 0, "id", &v, &vl) < 0 && errno == EINVAL, "NULL json: EINVAL");
}

static void test_quote(void)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "", "\"\"" },
		{ "/mnt/data", "\"/mnt/data\"" },
		{ "a\"b\\c", "\"a\\\"b\\\\c\"" },
		{ "\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\"" },
		{ "\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"" },
		{ "caf\xc3\xa9 \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"" },
		{ "</script>", "\"</script>\"" },
	};
	static const char *const badutf8[] = { "\xff", "a\xc3", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80",
					       "\xf4\x90\x80\x80", "\x80", "\xe2\x82" };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *q = ub_json_quote(cases[i].in), *back = NULL;

		CHECK(q && strcmp(q, cases[i].out) == 0, "quote -> %s", cases[i].out);
		CHECK(q && ub_json_decode_string(q, strlen(q), &back) == 0 && strcmp(back, cases[i].in) == 0,
		      "quote/decode round trip %s", cases[i].out);
		free(q);
		free(back);
	}
	for (size_t i = 0; i < sizeof(badutf8) / sizeof(badutf8[0]); i++)
		CHECK(ub_json_quote(badutf8[i]) == NULL && errno == EILSEQ, "invalid UTF-8 #%zu refused", i);
	CHECK(ub_json_quote(NULL) == NULL && errno == EINVAL, "quote NULL: EINVAL");

	/* every byte 1..0x7f round-trips */
	{
		char all[128], *q, *back = NULL;

		for (int i = 1; i < 128; i++)
			all[i - 1] = (char)i;
		all[127] = '\0';
		q = ub_json_quote(all);
		CHECK(q && ub_json_validate(q, strlen(q)) == 0 && ub_json_decode_string(q, strlen(q), &back) == 0 &&
		      strcmp(back, all) == 0, "all ASCII round-trips");
		free(q);
		free(back);
	}
}

/* ------------------------------------------------------------------ */

static int parse(const char *body, unsigned long long id, struct ub_response **r, struct ub_error *err)
{
	char *p = exact(body, strlen(body));
	int ret = ub_parse_response(p, strlen(body), id, r, err);

	free(p);
	return ret;
}

static void test_parse(void)
{
	struct ub_response *r = NULL;
	struct ub_error err;

	CHECK(parse("{\"v\":1,\"id\":7,\"ok\":true,\"result\":{\"id\":\"r-5f\",\"n\":[1,2]}}", 7, &r, &err) == 0 &&
	      r->ok && strcmp(r->result, "{\"id\":\"r-5f\",\"n\":[1,2]}") == 0 &&
	      r->result_len == strlen(r->result) && r->code[0] == '\0' && r->message[0] == '\0' &&
	      err.code[0] == '\0', "ok response parsed, raw result exact");
	ub_response_free(r);

	CHECK(parse(" { \"result\" : null , \"ok\" : true, \"id\" : 0, \"v\" : 1, \"extra\":[{}] } ", 0, &r, NULL) == 0 &&
	      r->ok && strcmp(r->result, "null") == 0, "member order, whitespace and unknown members");
	ub_response_free(r);

	CHECK(parse("{\"v\":1,\"id\":3,\"ok\":false,\"error\":{\"code\":\"E_NS_NOT_OWNED\",\"message\":"
		    "\"pid ns \\\"x\\\" \\u00e9\\ud83d\\ude00\\nline2\",\"details\":{\"a\":[1]}}}", 3, &r, &err) == 0 &&
	      !r->ok && strcmp(r->code, "E_NS_NOT_OWNED") == 0 &&
	      strcmp(r->message, "pid ns \"x\" \xc3\xa9\xf0\x9f\x98\x80\nline2") == 0 && r->result == NULL,
	      "error response parsed, message decoded");
	ub_response_error(r, &err);
	CHECK(strcmp(err.code, "E_NS_NOT_OWNED") == 0 &&
	      strcmp(err.message, "pid ns \"x\" \xc3\xa9\xf0\x9f\x98\x80?line2") == 0,
	      "ub_error message sanitised: %s", err.message);
	ub_response_free(r);

	CHECK(parse("{\"v\":1,\"id\":null,\"ok\":false,\"error\":{\"code\":\"E_BAD_REQUEST\",\"message\":\"m\"}}", 9, &r, NULL) == 0 &&
	      !r->ok && strcmp(r->code, "E_BAD_REQUEST") == 0, "null id error accepted");
	ub_response_free(r);

	CHECK(parse("{\"v\":1,\"id\":1,\"ok\":false,\"error\":{\"code\":\"E_X\",\"message\":\"a\\ud800b\\udc00c\\u0000d\"}}", 1, &r, NULL) == 0 &&
	      strcmp(r->message, "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd" "d") == 0,
	      "lone surrogates and U+0000 in message become U+FFFD");
	ub_response_free(r);

	CHECK(parse("{\"v\":1,\"id\":1,\"ok\":false,\"error\":{\"code\":\"E_X\"}}", 1, &r, NULL) == 0 &&
	      strcmp(r->message, "") == 0, "missing message is empty");
	ub_response_free(r);

	{
		/* a long message is kept whole in the response, truncated on a
		 * character boundary in struct ub_error */
		char buf[2048], msg[1100];

		for (int i = 0; i < 1098; i += 2) {
			msg[i] = '\xc3';
			msg[i + 1] = '\xa9';
		}
		msg[1098] = '\0';
		snprintf(buf, sizeof(buf), "{\"v\":1,\"id\":1,\"ok\":false,\"error\":{\"code\":\"E_IO\",\"message\":\"%s\"}}", msg);
		CHECK(parse(buf, 1, &r, NULL) == 0 && strlen(r->message) == 1098, "long message kept");
		ub_response_error(r, &err);
		CHECK(strlen(err.message) == 254 && strchr(err.message, '?') == NULL,
		      "ub_error message truncated on a UTF-8 boundary (%zu)", strlen(err.message));
		ub_response_free(r);
	}

	static const struct { const char *body; const char *why; } bad[] = {
		{ "", "empty frame" },
		{ "[]", "array" },
		{ "{\"v\":1,\"id\":1,\"ok\":true}", "ok without result" },
		{ "{\"id\":1,\"ok\":true,\"result\":1}", "no v" },
		{ "{\"v\":2,\"id\":1,\"ok\":true,\"result\":1}", "v 2" },
		{ "{\"v\":\"1\",\"id\":1,\"ok\":true,\"result\":1}", "v string" },
		{ "{\"v\":1.0,\"id\":1,\"ok\":true,\"result\":1}", "v 1.0" },
		{ "{\"v\":1,\"ok\":true,\"result\":1}", "no id" },
		{ "{\"v\":1,\"id\":2,\"ok\":true,\"result\":1}", "wrong id" },
		{ "{\"v\":1,\"id\":\"1\",\"ok\":true,\"result\":1}", "string id" },
		{ "{\"v\":1,\"id\":1.0,\"ok\":true,\"result\":1}", "id 1.0" },
		{ "{\"v\":1,\"id\":1e0,\"ok\":true,\"result\":1}", "id 1e0" },
		{ "{\"v\":1,\"id\":-1,\"ok\":true,\"result\":1}", "id -1" },
		{ "{\"v\":1,\"id\":null,\"ok\":true,\"result\":1}", "ok with null id" },
		{ "{\"v\":1,\"id\":1,\"ok\":\"true\",\"result\":1}", "ok string" },
		{ "{\"v\":1,\"id\":1,\"ok\":1,\"result\":1}", "ok number" },
		{ "{\"v\":1,\"id\":1,\"result\":1}", "no ok" },
		{ "{\"v\":1,\"id\":1,\"ok\":true,\"ok\":false,\"result\":1}", "duplicate ok" },
		{ "{\"v\":1,\"id\":1,\"id\":2,\"ok\":true,\"result\":1}", "duplicate id" },
		{ "{\"v\":1,\"id\":1,\"ok\":true,\"result\":1,\"result\":2}", "duplicate result" },
		{ "{\"v\":1,\"id\":1,\"ok\":false}", "error without error" },
		{ "{\"v\":1,\"id\":1,\"ok\":false,\"error\":\"E_X\"}", "error not an object" },
		{ "{\"v\":1,\"id\":1,\"ok\":false,\"error\":{\"message\":\"m\"}}", "no code" },
		{ "{\"v\":1,\"id\":1,\"ok\":false,\"error\":{\"code\":5}}", "code not a string" },
		{ "{\"v\":1,\"id\":1,\"ok\":false,\"error\":{\"code\":\"e_lower\"}}", "code lowercase" },
		{ "{\"v\":1,\"id\":1,\"ok\":false,\"error\":{\"code\":\"\"}}", "code empty" },
		{ "{\"v\":1,\"id\":1,\"ok\":false,\"error\":{\"code\":\"E_A\\nB\"}}", "code with newline" },
		{ "{\"v\":1,\"id\":1,\"ok\":false,\"error\":{\"code\":\"E_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123\"}}", "code 32 chars" },
		{ "{\"v\":1,\"id\":1,\"ok\":false,\"error\":{\"code\":\"E_X\",\"code\":\"E_Y\"}}", "duplicate code" },
		{ "{\"v\":1,\"id\":1,\"ok\":false,\"error\":{\"code\":\"E_X\",\"message\":7}}", "message not a string" },
		{ "{\"v\":1,\"id\":1,\"ok\":true,\"result\":1} x", "trailing garbage" },
		{ "{\"v\":1,\"id\":1,\"ok\":true,\"result\":{}", "truncated" },
		{ "{\"v\":1,\"id\":1,\"ok\":true,\"result\":\"\xff\"}", "invalid UTF-8" },
		{ "garbage", "garbage" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = (struct ub_response *)&err; /* must be reset to NULL */
		CHECK(parse(bad[i].body, 1, &r, &err) < 0 && errno == EPROTO && r == NULL &&
		      strcmp(err.code, "E_PROTOCOL") == 0, "refused (%s): %s", bad[i].why, err.message);
	}

	/* 31-char code is the longest accepted */
	CHECK(parse("{\"v\":1,\"id\":1,\"ok\":false,\"error\":{\"code\":\"E_ABCDEFGHIJKLMNOPQRSTUVWXYZ012\"}}", 1, &r, NULL) == 0 &&
	      strlen(r->code) == 31, "31-char code accepted");
	ub_response_free(r);

	/* every prefix of a valid response is refused, never over-read */
	{
		const char *ok = "{\"v\":1,\"id\":1,\"ok\":false,\"error\":{\"code\":\"E_X\",\"message\":\"\\ud83d\\ude00\\u00e9\"}}";
		int all = 1;

		for (size_t n = 0; n < strlen(ok); n++) {
			char *p = exact(ok, n);

			if (ub_parse_response(p, n, 1, &r, NULL) == 0) {
				all = 0;
				ub_response_free(r);
			}
			free(p);
		}
		CHECK(all, "every truncation of a response refused");
	}
	CHECK(ub_parse_response("{}", (size_t)UB_MAX_RESPONSE + 1, 1, &r, &err) < 0 && errno == EMSGSIZE,
	      "over 16 MiB refused before copying");
}

/* ------------------------------------------------------------------ framing */

static void frame_write(int fd, const char *body)
{
	size_t n = strlen(body);
	unsigned char h[4] = { (unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8),
			       (unsigned char)n };

	if (write(fd, h, 4) != 4 || write(fd, body, n) != (ssize_t)n)
		abort();
}

/* Read one request frame the client sent; returns a malloc'd body or NULL. */
static char *frame_read(int fd)
{
	unsigned char h[4];
	size_t n;
	char *b;

	if (recv(fd, h, 4, MSG_WAITALL | MSG_DONTWAIT) != 4)
		return NULL;
	n = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
	b = calloc(1, n + 1);
	if (!b || recv(fd, b, n, MSG_WAITALL | MSG_DONTWAIT) != (ssize_t)n) {
		free(b);
		return NULL;
	}
	return b;
}

static int nothing_sent(int fd)
{
	char c;

	return recv(fd, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

static struct ub_conn *pair(int *peer, int timeout_ms)
{
	int sv[2];
	struct ub_conn *c;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || ub_connect_fd(sv[0], timeout_ms, &c) < 0)
		abort();
	*peer = sv[1];
	return c;
}

static void test_framing(void)
{
	struct ub_response *r;
	struct ub_error err;
	struct ub_conn *c;
	char *req, *id;
	int peer;

	/* request text, id sequence, response */
	c = pair(&peer, 1000);
	frame_write(peer, "{\"v\":1,\"id\":1,\"ok\":true,\"result\":{\"version\":\"0.1.0\"}}");
	CHECK(ub_request(c, "ping", NULL, &r) == 0 && r->ok && strcmp(r->result, "{\"version\":\"0.1.0\"}") == 0,
	      "ping round trip");
	ub_response_free(r);
	req = frame_read(peer);
	CHECK(req && strcmp(req, "{\"v\":1,\"id\":1,\"op\":\"ping\"}") == 0, "request text: %s", req ? req : "(none)");
	free(req);

	frame_write(peer, "{\"v\":1,\"id\":2,\"ok\":true,\"result\":{\"id\":\"r-abc\"}}");
	CHECK(ub_register(c, "/mnt/a\"b\\c\nd", "tmpfs", NULL, &id, &err) == 0 && id && strcmp(id, "r-abc") == 0 &&
	      err.code[0] == '\0', "register returns the id");
	free(id);
	req = frame_read(peer);
	CHECK(req && strcmp(req, "{\"v\":1,\"id\":2,\"op\":\"register\",\"params\":{\"mountpoint\":\"/mnt/a\\\"b\\\\c\\nd\","
			  "\"fstype\":\"tmpfs\"}}") == 0, "register request text: %s", req ? req : "(none)");
	{
		const char *pv;
		size_t pl;
		char *mp = NULL;

		CHECK(req && ub_json_find(req, strlen(req), "params", &pv, &pl) == 0 &&
		      ub_json_get_string(pv, pl, "mountpoint", &mp) == 0 && strcmp(mp, "/mnt/a\"b\\c\nd") == 0,
		      "mountpoint survives escaping");
		free(mp);
	}
	free(req);

	/* params_json passes through, trimmed; bad params are not sent */
	frame_write(peer, "{\"v\":1,\"id\":3,\"ok\":true,\"result\":[]}");
	CHECK(ub_request(c, "list", " \n{\"a\" : [1, {}]}\t", &r) == 0 && strcmp(r->result, "[]") == 0, "params_json");
	ub_response_free(r);
	req = frame_read(peer);
	CHECK(req && strcmp(req, "{\"v\":1,\"id\":3,\"op\":\"list\",\"params\":{\"a\" : [1, {}]}}") == 0,
	      "params request text: %s", req ? req : "(none)");
	free(req);
	{
		static const char *const badp[] = { "{}, \"pid\": 1", "[]", "\"x\"", "", "{", "{} {}", "{\"a\":\"\xff\"}" };

		for (size_t i = 0; i < sizeof(badp) / sizeof(badp[0]); i++) {
			CHECK(ub_request(c, "list", badp[i], &r) < 0 && errno == EINVAL && r == NULL,
			      "bad params refused: [%s]", badp[i]);
			ub_conn_error(c, &err);
			CHECK(strcmp(err.code, "E_BAD_REQUEST") == 0 && nothing_sent(peer), "... E_BAD_REQUEST, nothing sent");
		}
	}
	CHECK(ub_request(c, "", NULL, &r) < 0 && errno == EINVAL, "empty op refused");
	CHECK(ub_request(c, "\xff", NULL, &r) < 0 && errno == EILSEQ, "non-UTF-8 op refused");
	CHECK(ub_request(c, "a_very_long_op_name_that_goes_past_the_sixty_four_byte_limit_of_ops", NULL, &r) < 0 &&
	      errno == EINVAL, "op over 64 bytes refused");
	CHECK(ub_register(c, "/mnt/\xff", NULL, NULL, &id, &err) < 0 && errno == EILSEQ && id == NULL &&
	      strcmp(err.code, "E_BAD_REQUEST") == 0 && nothing_sent(peer), "non-UTF-8 mountpoint refused: %s", err.message);
	CHECK(ub_register(c, "/mnt", NULL, "\xc3", &id, &err) < 0 && errno == EILSEQ, "non-UTF-8 source refused");
	{
		char *big = malloc(70000);

		memset(big, 'a', 69999);
		big[69999] = '\0';
		big[0] = '/';
		CHECK(ub_register(c, big, NULL, NULL, &id, &err) < 0 && errno == EMSGSIZE &&
		      strcmp(err.code, "E_BAD_REQUEST") == 0 && nothing_sent(peer), "request over 64 KiB refused: %s",
		      err.message);
		free(big);
	}

	/* broker errors */
	frame_write(peer, "{\"v\":1,\"id\":4,\"ok\":false,\"error\":{\"code\":\"E_PERMISSION\",\"message\":\"no\"}}");
	CHECK(ub_register(c, "/mnt", NULL, NULL, &id, &err) < 0 && errno == EREMOTEIO && id == NULL &&
	      strcmp(err.code, "E_PERMISSION") == 0 && strcmp(err.message, "no") == 0, "broker refusal reported");
	free(frame_read(peer));
	frame_write(peer, "{\"v\":1,\"id\":5,\"ok\":true,\"result\":{\"mountpoint\":\"/mnt\"}}");
	CHECK(ub_register(c, "/mnt", NULL, NULL, &id, &err) < 0 && errno == EPROTO && strcmp(err.code, "E_PROTOCOL") == 0,
	      "register result without id is E_PROTOCOL");
	free(frame_read(peer));
	frame_write(peer, "{\"v\":1,\"id\":6,\"ok\":true,\"result\":{\"id\":\"r-1\",\"removed\":true}}");
	CHECK(ub_unregister(c, "r-1", &err) == 0, "unregister");
	req = frame_read(peer);
	CHECK(req && strcmp(req, "{\"v\":1,\"id\":6,\"op\":\"unregister\",\"params\":{\"id\":\"r-1\"}}") == 0,
	      "unregister request text");
	free(req);

	/* E_PROTOCOL from the broker: the connection is finished */
	frame_write(peer, "{\"v\":1,\"id\":null,\"ok\":false,\"error\":{\"code\":\"E_PROTOCOL\",\"message\":\"too big\"}}");
	CHECK(ub_ping(c, &err) < 0 && strcmp(err.code, "E_PROTOCOL") == 0, "broker E_PROTOCOL reported");
	CHECK(ub_ping(c, &err) < 0 && errno == ENOTCONN && strcmp(err.code, "E_PROTOCOL") == 0,
	      "then the connection is unusable: %s", err.message);
	ub_close(c);
	close(peer);

	/* bad frames from the broker */
	static const struct { const char *hdr; size_t hlen; const char *body; int want_errno; const char *code; const char *why; } frames[] = {
		{ "\xff\xff\xff\xff", 4, "", EPROTO, "E_PROTOCOL", "4 GiB length" },
		{ "\x01\x00\x00\x01", 4, "", EPROTO, "E_PROTOCOL", "16 MiB + 1 length" },
		{ "\x00\x00\x00\x10", 4, "{\"v\":1", EPROTO, "E_PROTOCOL", "truncated body, then EOF" },
		{ "\x00\x00", 2, "", EPROTO, "E_PROTOCOL", "truncated header, then EOF" },
		{ "", 0, "", ECONNRESET, "E_UNAVAILABLE", "EOF, no answer" },
		{ "\x00\x00\x00\x07", 4, "garbage", EPROTO, "E_PROTOCOL", "garbage JSON" },
		{ "\x00\x00\x00\x00", 4, "", EPROTO, "E_PROTOCOL", "empty frame" },
		{ "\x00\x00\x00\x2a", 4, "{\"v\":1,\"id\":99,\"ok\":true,\"result\":null}", EPROTO, "E_PROTOCOL", "wrong id" },
	};
	for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
		c = pair(&peer, 2000);
		if (write(peer, frames[i].hdr, frames[i].hlen) != (ssize_t)frames[i].hlen ||
		    write(peer, frames[i].body, strlen(frames[i].body)) != (ssize_t)strlen(frames[i].body))
			abort();
		shutdown(peer, SHUT_WR);
		r = (struct ub_response *)&err;
		CHECK(ub_ping(c, &err) < 0 && errno == frames[i].want_errno && strcmp(err.code, frames[i].code) == 0,
		      "%s: %s: %s", frames[i].why, err.code, err.message);
		CHECK(ub_request(c, "ping", NULL, &r) < 0 && errno == ENOTCONN && r == NULL, "%s: then ENOTCONN", frames[i].why);
		ub_close(c);
		close(peer);
	}

	/* peer gone before we send: EPIPE, no SIGPIPE */
	c = pair(&peer, 1000);
	close(peer);
	CHECK(ub_ping(c, &err) < 0 && (errno == EPIPE || errno == ECONNRESET) && strcmp(err.code, "E_UNAVAILABLE") == 0,
	      "closed peer: %s", err.message);
	ub_close(c);

	/* silent peer: timeout */
	{
		long long t0;

		c = pair(&peer, 200);
		t0 = now_ms();
		CHECK(ub_ping(c, &err) < 0 && errno == ETIMEDOUT && strcmp(err.code, "E_UNAVAILABLE") == 0 &&
		      now_ms() - t0 >= 190 && now_ms() - t0 < 1000, "silent peer times out (%lld ms): %s",
		      now_ms() - t0, err.message);
		ub_close(c);
		close(peer);
	}
}

/* A child plays the broker: answers request 1 with body, dribbling it out
 * in chunks of chunk bytes with a pause, or hangs after half of it. */
static pid_t slow_peer(int fd, const char *body, size_t len, size_t chunk, int hang)
{
	pid_t pid = fork();

	if (pid < 0)
		abort();
	if (pid == 0) {
		unsigned char h[4] = { (unsigned char)(len >> 24), (unsigned char)(len >> 16),
				       (unsigned char)(len >> 8), (unsigned char)len };
		char buf[256];
		struct timespec ts = { 0, 2 * 1000 * 1000 };

		if (read(fd, buf, sizeof(buf)) <= 0) /* wait for the request */
			_exit(1);
		for (int i = 0; i < 4; i++) {
			if (write(fd, h + i, 1) != 1)
				_exit(1);
			nanosleep(&ts, NULL);
		}
		for (size_t done = 0; done < len;) {
			size_t n = len - done < chunk ? len - done : chunk;

			if (hang && done >= len / 2)
				pause();
			if (write(fd, body + done, n) != (ssize_t)n)
				_exit(1);
			done += n;
			nanosleep(&ts, NULL);
		}
		_exit(0);
	}
	return pid;
}

static void reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void test_short_io(void)
{
	struct ub_response *r;
	struct ub_error err;
	struct ub_conn *c;
	int peer;
	pid_t pid;

	{
		const char *body = "{\"v\":1,\"id\":1,\"ok\":true,\"result\":{\"id\":\"r-\\u00e9\"}}";

		c = pair(&peer, 3000);
		pid = slow_peer(peer, body, strlen(body), 1, 0);
		CHECK(ub_request(c, "ping", NULL, &r) == 0 && r->ok, "response dribbled byte by byte");
		ub_response_free(r);
		reap(pid);
		ub_close(c);
		close(peer);
	}
	{
		/* a 4 MiB result in 64 KiB writes */
		size_t n = 4u << 20;
		char *body = malloc(n + 100);
		size_t len;

		len = (size_t)sprintf(body, "{\"v\":1,\"id\":1,\"ok\":true,\"result\":\"");
		memset(body + len, 'x', n);
		len += n;
		len += (size_t)sprintf(body + len, "\"}");
		c = pair(&peer, 10000);
		pid = slow_peer(peer, body, len, 65536, 0);
		CHECK(ub_request(c, "list", NULL, &r) == 0 && r->ok && r->result_len == n + 2, "4 MiB response");
		ub_response_free(r);
		reap(pid);
		ub_close(c);
		close(peer);
		free(body);
	}
	{
		/* half a frame, then silence: the deadline still holds */
		const char *body = "{\"v\":1,\"id\":1,\"ok\":true,\"result\":{}}";
		long long t0 = now_ms();

		c = pair(&peer, 300);
		pid = slow_peer(peer, body, strlen(body), 4, 1);
		CHECK(ub_request(c, "ping", NULL, &r) < 0 && errno == ETIMEDOUT && now_ms() - t0 < 1500,
		      "stalled mid-frame times out (%lld ms)", now_ms() - t0);
		ub_conn_error(c, &err);
		CHECK(strcmp(err.code, "E_UNAVAILABLE") == 0, "... as E_UNAVAILABLE: %s", err.message);
		reap(pid);
		ub_close(c);
		close(peer);
	}
}

static void test_connect(void)
{
	struct ub_conn *c = (struct ub_conn *)&c, *held[4] = { 0 };
	struct ub_error err;
	char dir[] = "/tmp/ub-selftest.XXXXXX", path[64], longp[200];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	long long t0;
	int lfd, timed_out = 0;

	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/missing.sock", dir);
	t0 = now_ms();
	CHECK(ub_connect(path, 2000, &c) < 0 && errno == ENOENT && c == NULL && now_ms() - t0 < 100,
	      "missing socket: ENOENT at once");
	ub_connect_error(&err, path, errno);
	CHECK(strcmp(err.code, "E_UNAVAILABLE") == 0 && strstr(err.message, "missing.sock"), "%s", err.message);
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	CHECK(ub_connect(longp, 100, &c) < 0 && errno == ENAMETOOLONG, "path too long");
	CHECK(ub_connect("", 100, &c) < 0 && errno == EINVAL, "empty path");

	/* a listener that never accepts: the backlog fills, connect times out */
	snprintf(path, sizeof(path), "%s/s.sock", dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 0) < 0)
		abort();
	CHECK(ub_connect(path, 1000, &held[0]) == 0, "connect to a listener");
	for (int i = 1; i < 4 && !timed_out; i++) {
		t0 = now_ms();
		if (ub_connect(path, 200, &held[i]) < 0) {
			timed_out = errno == ETIMEDOUT && now_ms() - t0 >= 190 && now_ms() - t0 < 1000;
			break;
		}
	}
	CHECK(timed_out, "full backlog: connect times out");
	for (int i = 0; i < 4; i++)
		ub_close(held[i]);
	close(lfd);
	unlink(path);
	rmdir(dir);
	ub_close(NULL);
	ub_response_free(NULL);
}

int main(int argc, char **argv)
{
	selftest_init(argc, argv);
	signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill us: the library must not raise it */

	test_validate();
	test_nesting();
	test_decode();
	test_find();
	test_quote();
	test_parse();
	test_framing();
	test_short_io();
	test_connect();

	return selftest_done();
}
