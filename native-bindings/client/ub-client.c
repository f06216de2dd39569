/*
 * ub-client.c: C client for the upcall-broker socket protocol.  See
 * ub-client.h for the API contract and docs/protocol.md for the protocol.
 *
 * Layout: error helpers, the JSON scanner (validate / skip / find / decode),
 * response parsing (in place, one allocation per response), the transport
 * (non-blocking socket, poll(2) with a deadline), the convenience calls.
 * libc only; no global mutable state.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ub-client.h"

#define MAX_OP_BYTES 64
/* Largest id we send: the protocol allows integers up to 2^53. */
#define MAX_REQUEST_ID (1ull << 53)

struct ub_conn {
	int fd;
	int timeout_ms;
	int broken;                 /* transport/protocol failure: unusable */
	unsigned long long next_id;
	struct ub_error last;       /* failure of the most recent ub_request */
};

/* A response and its frame body live in one allocation.  pub must stay the
 * first member: ub_response_free() casts back. */
struct resp_block {
	struct ub_response pub;
	char code[32];
	size_t len;
	char body[];                /* len + 1 bytes, NUL-terminated */
};

/* ------------------------------------------------------------------------
 * errors
 */

static size_t utf8_seq(const unsigned char *s, size_t avail);

/* Make msg printable on one line: invalid UTF-8 and control characters
 * become '?'.  Works in place. */
static void sanitize(char *msg)
{
	unsigned char *s = (unsigned char *)msg;
	size_t len = strlen(msg), i = 0;

	while (i < len) {
		size_t n = utf8_seq(s + i, len - i);

		if (n == 0 || (n == 1 && (s[i] < 0x20 || s[i] == 0x7f))) {
			s[i++] = '?';
			continue;
		}
		i += n;
	}
}

static void set_error(struct ub_error *err, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_error(struct ub_error *err, const char *code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	snprintf(err->code, sizeof(err->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	sanitize(err->message);
}

static void clear_error(struct ub_error *err)
{
	if (err) {
		err->code[0] = '\0';
		err->message[0] = '\0';
	}
}

/* Copy a UTF-8 string into a fixed buffer, cut on a character boundary. */
static void copy_truncated(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);

	if (n >= cap) {
		n = cap - 1;
		while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
	sanitize(dst);
}

void ub_connect_error(struct ub_error *err, const char *socket_path, int errnum)
{
	const char *path = socket_path ? socket_path : UB_DEFAULT_SOCKET;

	if (errnum == ETIMEDOUT)
		set_error(err, "E_UNAVAILABLE", "timed out connecting to %s", path);
	else
		set_error(err, "E_UNAVAILABLE", "cannot connect to %s: %s", path, strerror(errnum));
}

void ub_conn_error(const struct ub_conn *conn, struct ub_error *err)
{
	if (!err)
		return;
	if (conn)
		*err = conn->last;
	else
		set_error(err, "E_BAD_REQUEST", "no connection");
}

void ub_response_error(const struct ub_response *resp, struct ub_error *err)
{
	if (!err)
		return;
	if (!resp || resp->ok) {
		clear_error(err);
		return;
	}
	copy_truncated(err->code, sizeof(err->code), resp->code);
	copy_truncated(err->message, sizeof(err->message), resp->message);
}

/* ------------------------------------------------------------------------
 * JSON scanner.  Every function works on [s, s + len) and checks bounds
 * before each access.
 */

struct scan {
	const unsigned char *s;
	size_t len;
	size_t pos;
};

/* Length (1..4) of the valid UTF-8 sequence at s, or 0: rejects stray
 * continuation bytes, overlong forms, UTF-16 surrogates, > U+10FFFF and
 * sequences cut by the end of the buffer. */
static size_t utf8_seq(const unsigned char *s, size_t avail)
{
	unsigned c;

	if (avail == 0)
		return 0;
	c = s[0];
	if (c < 0x80)
		return 1;
	if (c < 0xc2)
		return 0;
	if (c < 0xe0) {
		if (avail < 2 || (s[1] & 0xc0) != 0x80)
			return 0;
		return 2;
	}
	if (c < 0xf0) {
		if (avail < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if (c == 0xe0 && s[1] < 0xa0)
			return 0; /* overlong */
		if (c == 0xed && s[1] >= 0xa0)
			return 0; /* surrogate */
		return 3;
	}
	if (c < 0xf5) {
		if (avail < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
		    (s[3] & 0xc0) != 0x80)
			return 0;
		if (c == 0xf0 && s[1] < 0x90)
			return 0; /* overlong */
		if (c == 0xf4 && s[1] >= 0x90)
			return 0; /* > U+10FFFF */
		return 4;
	}
	return 0;
}

static int valid_utf8(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < len) {
		size_t n = utf8_seq(s + i, len - i);

		if (n == 0)
			return 0;
		i += n;
	}
	return 1;
}

static int hexval(unsigned c)
{
	if (c >= '0' && c <= '9')
		return (int)(c - '0');
	if (c >= 'a' && c <= 'f')
		return (int)(c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (int)(c - 'A' + 10);
	return -1;
}

/* The 4 hex digits at s (caller checked there are 4 bytes), or -1. */
static long hex4(const unsigned char *s)
{
	long v = 0;

	for (int i = 0; i < 4; i++) {
		int h = hexval(s[i]);

		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

static void skip_ws(struct scan *sc)
{
	while (sc->pos < sc->len) {
		unsigned char c = sc->s[sc->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		sc->pos++;
	}
}

/* sc->pos at '"': validate the string token, leave pos after its closing
 * quote.  Escapes are checked for syntax only (a lone surrogate escape is
 * valid JSON syntax; decoding decides what to do with it). */
static int scan_string(struct scan *sc)
{
	size_t pos = sc->pos;

	if (pos >= sc->len || sc->s[pos] != '"')
		return -1;
	pos++;
	for (;;) {
		unsigned char c;

		if (pos >= sc->len)
			return -1;
		c = sc->s[pos];
		if (c == '"') {
			sc->pos = pos + 1;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c == '\\') {
			if (sc->len - pos < 2)
				return -1;
			switch (sc->s[pos + 1]) {
			case '"': case '\\': case '/': case 'b':
			case 'f': case 'n': case 'r': case 't':
				pos += 2;
				break;
			case 'u':
				if (sc->len - pos < 6 || hex4(sc->s + pos + 2) < 0)
					return -1;
				pos += 6;
				break;
			default:
				return -1;
			}
			continue;
		}
		{
			size_t n = utf8_seq(sc->s + pos, sc->len - pos);

			if (n == 0)
				return -1;
			pos += n;
		}
	}
}

static int is_digit(const struct scan *sc, size_t pos)
{
	return pos < sc->len && sc->s[pos] >= '0' && sc->s[pos] <= '9';
}

static int scan_number(struct scan *sc)
{
	size_t pos = sc->pos;

	if (pos < sc->len && sc->s[pos] == '-')
		pos++;
	if (!is_digit(sc, pos))
		return -1;
	if (sc->s[pos] == '0')
		pos++;
	else
		while (is_digit(sc, pos))
			pos++;
	if (pos < sc->len && sc->s[pos] == '.') {
		pos++;
		if (!is_digit(sc, pos))
			return -1;
		while (is_digit(sc, pos))
			pos++;
	}
	if (pos < sc->len && (sc->s[pos] == 'e' || sc->s[pos] == 'E')) {
		pos++;
		if (pos < sc->len && (sc->s[pos] == '+' || sc->s[pos] == '-'))
			pos++;
		if (!is_digit(sc, pos))
			return -1;
		while (is_digit(sc, pos))
			pos++;
	}
	sc->pos = pos;
	return 0;
}

static int scan_literal(struct scan *sc, const char *lit)
{
	size_t n = strlen(lit);

	if (sc->len - sc->pos < n || memcmp(sc->s + sc->pos, lit, n) != 0)
		return -1;
	sc->pos += n;
	return 0;
}

/* sc->pos at the first byte of a value (no leading whitespace): validate it
 * and leave pos just after it.  depth = number of enclosing containers. */
static int scan_value(struct scan *sc, int depth)
{
	unsigned char open, close;

	if (sc->pos >= sc->len)
		return -1;
	switch (sc->s[sc->pos]) {
	case '"':
		return scan_string(sc);
	case 't':
		return scan_literal(sc, "true");
	case 'f':
		return scan_literal(sc, "false");
	case 'n':
		return scan_literal(sc, "null");
	case '{':
	case '[':
		break;
	default:
		return scan_number(sc);
	}

	if (depth >= UB_JSON_MAX_DEPTH)
		return -1;
	open = sc->s[sc->pos++];
	close = open == '{' ? '}' : ']';
	skip_ws(sc);
	if (sc->pos < sc->len && sc->s[sc->pos] == close) {
		sc->pos++;
		return 0;
	}
	for (;;) {
		if (open == '{') {
			if (scan_string(sc) < 0)
				return -1;
			skip_ws(sc);
			if (sc->pos >= sc->len || sc->s[sc->pos] != ':')
				return -1;
			sc->pos++;
			skip_ws(sc);
		}
		if (scan_value(sc, depth + 1) < 0)
			return -1;
		skip_ws(sc);
		if (sc->pos >= sc->len)
			return -1;
		if (sc->s[sc->pos] == close) {
			sc->pos++;
			return 0;
		}
		if (sc->s[sc->pos] != ',')
			return -1;
		sc->pos++;
		skip_ws(sc);
	}
}

/* Exactly one value, optional whitespace around it.  *vstart and *vend (may
 * be NULL) receive the value's span without the whitespace. */
static int scan_document(const char *json, size_t len, size_t *vstart, size_t *vend)
{
	struct scan sc = { (const unsigned char *)json, len, 0 };
	size_t start;

	if (!json)
		return -1;
	skip_ws(&sc);
	start = sc.pos;
	if (scan_value(&sc, 0) < 0)
		return -1;
	if (vend)
		*vend = sc.pos;
	skip_ws(&sc);
	if (sc.pos != len)
		return -1;
	if (vstart)
		*vstart = start;
	return 0;
}

int ub_json_validate(const char *json, size_t len)
{
	if (scan_document(json, len, NULL, NULL) < 0) {
		errno = EBADMSG;
		return -1;
	}
	return 0;
}

#define DECODE_LENIENT 1 /* lone surrogate or U+0000 -> U+FFFD (else error) */

static size_t put_utf8(unsigned char out[4], unsigned long cp)
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | (cp >> 6));
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | (cp >> 12));
		out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | (cp >> 18));
	out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * Decode the next character of a string token's body.  s[*i] is inside the
 * token, before end (the closing quote's index).  Writes 1..4 UTF-8 bytes to
 * out, sets *n, advances *i.  The output is never longer than the input it
 * consumed, which makes decoding in place safe.
 */
static int str_next(const unsigned char *s, size_t *i, size_t end,
		    unsigned char out[4], size_t *n, int flags)
{
	size_t pos = *i;
	unsigned long cp;
	long u;

	if (pos >= end)
		return -1;
	if (s[pos] != '\\') {
		size_t k = utf8_seq(s + pos, end - pos);

		if (k == 0 || s[pos] < 0x20)
			return -1;
		memcpy(out, s + pos, k);
		*n = k;
		*i = pos + k;
		return 0;
	}
	if (end - pos < 2)
		return -1;
	switch (s[pos + 1]) {
	case '"': cp = '"'; break;
	case '\\': cp = '\\'; break;
	case '/': cp = '/'; break;
	case 'b': cp = '\b'; break;
	case 'f': cp = '\f'; break;
	case 'n': cp = '\n'; break;
	case 'r': cp = '\r'; break;
	case 't': cp = '\t'; break;
	case 'u':
		if (end - pos < 6 || (u = hex4(s + pos + 2)) < 0)
			return -1;
		pos += 6;
		cp = (unsigned long)u;
		if (cp >= 0xd800 && cp <= 0xdbff) {
			long lo = -1;

			if (end - pos >= 6 && s[pos] == '\\' && s[pos + 1] == 'u')
				lo = hex4(s + pos + 2);
			if (lo >= 0xdc00 && lo <= 0xdfff) {
				cp = 0x10000 + ((cp - 0xd800) << 10) + ((unsigned long)lo - 0xdc00);
				pos += 6;
			} else if (flags & DECODE_LENIENT) {
				cp = 0xfffd;
			} else {
				return -1;
			}
		} else if (cp >= 0xdc00 && cp <= 0xdfff) {
			if (!(flags & DECODE_LENIENT))
				return -1;
			cp = 0xfffd;
		}
		if (cp == 0) {
			if (!(flags & DECODE_LENIENT))
				return -1;
			cp = 0xfffd;
		}
		*n = put_utf8(out, cp);
		*i = pos;
		return 0;
	default:
		return -1;
	}
	out[0] = (unsigned char)cp;
	*n = 1;
	*i = pos + 2;
	return 0;
}

/* Decode the validated string token [tok, tok + tok_len) (with quotes) into
 * dst, which has room for tok_len bytes; dst may equal tok (in place).
 * NUL-terminates.  Returns the decoded length or -1. */
static long decode_token(const unsigned char *tok, size_t tok_len, char *dst, int flags)
{
	size_t i = 1, end = tok_len - 1, d = 0;

	if (tok_len < 2 || tok[0] != '"' || tok[end] != '"')
		return -1;
	while (i < end) {
		unsigned char buf[4];
		size_t n;

		if (str_next(tok, &i, end, buf, &n, flags) < 0)
			return -1;
		memcpy(dst + d, buf, n); /* d + n <= i: never overtakes the reader */
		d += n;
	}
	dst[d] = '\0';
	return (long)d;
}

/* Does the validated string token equal key once decoded? */
static int token_equals(const unsigned char *tok, size_t tok_len, const char *key)
{
	size_t i = 1, end = tok_len - 1, k = 0, klen = strlen(key);

	if (tok_len < 2)
		return 0;
	while (i < end) {
		unsigned char buf[4];
		size_t n;

		if (str_next(tok, &i, end, buf, &n, 0) < 0)
			return 0;
		if (n > klen - k || memcmp(key + k, buf, n) != 0)
			return 0;
		k += n;
	}
	return k == klen;
}

/*
 * Scan the whole object [json, json + len) (whitespace around allowed) and
 * find the members named keys[0..nkeys).  spans[2*i], spans[2*i+1] receive
 * the value span of keys[i], or (0, 0) if absent.  Returns 0, or -1 with
 * *dup set to the duplicated key index (else -1) on malformed input.
 */
static int object_members(const char *json, size_t len, const char *const *keys,
			  size_t nkeys, size_t *spans, int *dup)
{
	struct scan sc = { (const unsigned char *)json, len, 0 };

	*dup = -1;
	for (size_t k = 0; k < 2 * nkeys; k++)
		spans[k] = 0;
	skip_ws(&sc);
	if (sc.pos >= len || sc.s[sc.pos] != '{')
		return -1;
	sc.pos++;
	skip_ws(&sc);
	if (sc.pos < len && sc.s[sc.pos] == '}') {
		sc.pos++;
		goto done;
	}
	for (;;) {
		size_t kstart = sc.pos, kend, vstart;

		if (scan_string(&sc) < 0)
			return -1;
		kend = sc.pos;
		skip_ws(&sc);
		if (sc.pos >= len || sc.s[sc.pos] != ':')
			return -1;
		sc.pos++;
		skip_ws(&sc);
		vstart = sc.pos;
		if (scan_value(&sc, 1) < 0)
			return -1;
		for (size_t k = 0; k < nkeys; k++) {
			if (!token_equals(sc.s + kstart, kend - kstart, keys[k]))
				continue;
			if (spans[2 * k + 1] != 0) {
				*dup = (int)k;
				return -1;
			}
			spans[2 * k] = vstart;
			spans[2 * k + 1] = sc.pos;
		}
		skip_ws(&sc);
		if (sc.pos >= len)
			return -1;
		if (sc.s[sc.pos] == '}') {
			sc.pos++;
			break;
		}
		if (sc.s[sc.pos] != ',')
			return -1;
		sc.pos++;
		skip_ws(&sc);
	}
done:
	skip_ws(&sc);
	return sc.pos == len ? 0 : -1;
}

int ub_json_find(const char *json, size_t len, const char *key,
		 const char **val, size_t *val_len)
{
	size_t spans[2];
	int dup;

	if (!json || !key || !val || !val_len) {
		errno = EINVAL;
		return -1;
	}
	if (object_members(json, len, &key, 1, spans, &dup) < 0) {
		errno = EBADMSG;
		return -1;
	}
	if (spans[1] == 0) {
		errno = ENOENT;
		return -1;
	}
	*val = json + spans[0];
	*val_len = spans[1] - spans[0];
	return 0;
}

int ub_json_decode_string(const char *tok, size_t tok_len, char **out)
{
	struct scan sc = { (const unsigned char *)tok, tok_len, 0 };
	char *buf;

	if (!tok || !out) {
		errno = EINVAL;
		return -1;
	}
	*out = NULL;
	if (scan_string(&sc) < 0 || sc.pos != tok_len) {
		errno = EBADMSG;
		return -1;
	}
	buf = malloc(tok_len);
	if (!buf)
		return -1;
	if (decode_token(sc.s, tok_len, buf, 0) < 0) {
		free(buf);
		errno = EBADMSG;
		return -1;
	}
	*out = buf;
	return 0;
}

int ub_json_get_string(const char *json, size_t len, const char *key, char **out)
{
	const char *val;
	size_t vlen;

	if (!out) {
		errno = EINVAL;
		return -1;
	}
	*out = NULL;
	if (ub_json_find(json, len, key, &val, &vlen) < 0)
		return -1;
	return ub_json_decode_string(val, vlen, out);
}

char *ub_json_quote(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t len, need = 2, i;
	char *out, *o;

	if (!str) {
		errno = EINVAL;
		return NULL;
	}
	len = strlen(str);
	if (!valid_utf8(str, len)) {
		errno = EILSEQ;
		return NULL;
	}
	for (i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\' || s[i] == '\b' || s[i] == '\f' ||
		    s[i] == '\n' || s[i] == '\r' || s[i] == '\t')
			need += 2;
		else if (s[i] < 0x20 || s[i] == 0x7f)
			need += 6;
		else
			need += 1;
	}
	out = malloc(need + 1);
	if (!out)
		return NULL;
	o = out;
	*o++ = '"';
	for (i = 0; i < len; i++) {
		unsigned char c = s[i];
		char esc = 0;

		switch (c) {
		case '"': esc = '"'; break;
		case '\\': esc = '\\'; break;
		case '\b': esc = 'b'; break;
		case '\f': esc = 'f'; break;
		case '\n': esc = 'n'; break;
		case '\r': esc = 'r'; break;
		case '\t': esc = 't'; break;
		default: break;
		}
		if (esc) {
			*o++ = '\\';
			*o++ = esc;
		} else if (c < 0x20 || c == 0x7f) {
			static const char hex[] = "0123456789abcdef";

			*o++ = '\\';
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		} else {
			*o++ = (char)c;
		}
	}
	*o++ = '"';
	*o = '\0';
	return out;
}

/* ------------------------------------------------------------------------
 * responses
 */

static int span_is(const char *s, size_t start, size_t end, const char *lit)
{
	size_t n = strlen(lit);

	return end - start == n && memcmp(s + start, lit, n) == 0;
}

/* A plain non-negative JSON integer (digits only) up to 2^53, else -1. */
static int parse_id(const char *s, size_t start, size_t end, unsigned long long *id)
{
	unsigned long long v = 0;

	if (end <= start || end - start > 16)
		return -1;
	if (s[start] == '0' && end - start > 1)
		return -1;
	for (size_t i = start; i < end; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > MAX_REQUEST_ID)
		return -1;
	*id = v;
	return 0;
}

static int valid_code(const char *code)
{
	size_t n = strlen(code);

	if (n == 0 || n >= sizeof(((struct ub_error *)0)->code))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((code[i] >= 'A' && code[i] <= 'Z') || (code[i] >= '0' && code[i] <= '9') ||
		      code[i] == '_'))
			return 0;
	return 1;
}

enum { K_V, K_ID, K_OK, K_RESULT, K_ERROR, K_COUNT };
static const char *const envelope_keys[K_COUNT] = { "v", "id", "ok", "result", "error" };
enum { E_CODE, E_MESSAGE, E_COUNT };
static const char *const error_keys[E_COUNT] = { "code", "message" };

#define PROTO(...) do { set_error(err, "E_PROTOCOL", __VA_ARGS__); return -1; } while (0)

/* Parse b->body[0..b->len) in place and fill b->pub. */
static int parse_block(struct resp_block *b, unsigned long long expect_id, struct ub_error *err)
{
	char *s = b->body;
	size_t sp[2 * K_COUNT];
	unsigned long long id;
	int dup, id_null;

	b->body[b->len] = '\0';
	/* one pass validates the whole frame and finds the envelope members */
	if (object_members(s, b->len, envelope_keys, K_COUNT, sp, &dup) < 0) {
		if (dup >= 0)
			PROTO("response has a duplicate \"%s\" member", envelope_keys[dup]);
		PROTO("response is not a valid JSON object (%zu bytes)", b->len);
	}
	if (sp[2 * K_V + 1] == 0 || !span_is(s, sp[2 * K_V], sp[2 * K_V + 1], "1"))
		PROTO("response \"v\" is missing or not 1");
	if (sp[2 * K_OK + 1] == 0)
		PROTO("response has no \"ok\"");
	if (span_is(s, sp[2 * K_OK], sp[2 * K_OK + 1], "true"))
		b->pub.ok = 1;
	else if (span_is(s, sp[2 * K_OK], sp[2 * K_OK + 1], "false"))
		b->pub.ok = 0;
	else
		PROTO("response \"ok\" is not a boolean");

	if (sp[2 * K_ID + 1] == 0)
		PROTO("response has no \"id\"");
	id_null = span_is(s, sp[2 * K_ID], sp[2 * K_ID + 1], "null");
	if (id_null) {
		/* the broker could not read our id: only an error makes sense */
		if (b->pub.ok)
			PROTO("successful response with a null id");
	} else if (parse_id(s, sp[2 * K_ID], sp[2 * K_ID + 1], &id) < 0 || id != expect_id) {
		PROTO("response id %.*s does not match request id %llu",
		      (int)(sp[2 * K_ID + 1] - sp[2 * K_ID] > 24 ? 24 : sp[2 * K_ID + 1] - sp[2 * K_ID]),
		      s + sp[2 * K_ID], expect_id);
	}

	b->code[0] = '\0';
	b->pub.code = b->code;
	b->pub.message = "";
	b->pub.result = NULL;
	b->pub.result_len = 0;

	if (b->pub.ok) {
		size_t rs = sp[2 * K_RESULT], re = sp[2 * K_RESULT + 1];

		if (re == 0)
			PROTO("successful response has no \"result\"");
		/* the byte after the value is whitespace, ',' or '}': free to clobber */
		s[re] = '\0';
		b->pub.result = s + rs;
		b->pub.result_len = re - rs;
		return 0;
	} else {
		size_t es = sp[2 * K_ERROR], ee = sp[2 * K_ERROR + 1], ep[2 * E_COUNT];
		size_t cs, ce;

		if (ee == 0 || s[es] != '{')
			PROTO("error response has no \"error\" object");
		if (object_members(s + es, ee - es, error_keys, E_COUNT, ep, &dup) < 0)
			PROTO("error response has a malformed \"error\" object");
		cs = es + ep[2 * E_CODE];
		ce = es + ep[2 * E_CODE + 1];
		if (ep[2 * E_CODE + 1] == 0 || s[cs] != '"' || ce - cs > sizeof(b->code) + 1 ||
		    decode_token((unsigned char *)s + cs, ce - cs, b->code, 0) < 0 ||
		    !valid_code(b->code)) {
			b->code[0] = '\0';
			PROTO("error response has no valid \"error.code\"");
		}
		if (ep[2 * E_MESSAGE + 1] != 0) {
			size_t ms = es + ep[2 * E_MESSAGE], me = es + ep[2 * E_MESSAGE + 1];

			if (s[ms] != '"' ||
			    decode_token((unsigned char *)s + ms, me - ms, s + ms, DECODE_LENIENT) < 0)
				PROTO("error response has a malformed \"error.message\"");
			b->pub.message = s + ms;
		}
		return 0;
	}
}

static struct resp_block *alloc_block(size_t len)
{
	struct resp_block *b;

	if (len > UB_MAX_RESPONSE) {
		errno = EMSGSIZE;
		return NULL;
	}
	b = malloc(offsetof(struct resp_block, body) + len + 1);
	if (!b)
		return NULL;
	memset(b, 0, offsetof(struct resp_block, body));
	b->len = len;
	return b;
}

int ub_parse_response(const char *body, size_t len, unsigned long long expect_id,
		      struct ub_response **out, struct ub_error *err)
{
	struct resp_block *b;

	if (!out || (!body && len)) {
		errno = EINVAL;
		return -1;
	}
	*out = NULL;
	b = alloc_block(len);
	if (!b) {
		if (errno == EMSGSIZE)
			set_error(err, "E_PROTOCOL", "response of %zu bytes is over the limit of %u",
				  len, UB_MAX_RESPONSE);
		else
			set_error(err, "E_INTERNAL", "out of memory");
		return -1;
	}
	if (len)
		memcpy(b->body, body, len);
	if (parse_block(b, expect_id, err) < 0) {
		free(b);
		errno = EPROTO;
		return -1;
	}
	clear_error(err);
	*out = &b->pub;
	return 0;
}

void ub_response_free(struct ub_response *resp)
{
	/* pub is the first member of struct resp_block */
	free(resp);
}

/* ------------------------------------------------------------------------
 * transport
 */

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int norm_timeout(int timeout_ms)
{
	return timeout_ms > 0 ? timeout_ms : UB_DEFAULT_TIMEOUT_MS;
}

/* Wait until fd is ready for events or the deadline passes (ETIMEDOUT).
 * POLLERR/POLLHUP count as ready: the next read/write reports them. */
static int wait_fd(int fd, short events, long long deadline)
{
	for (;;) {
		long long left = deadline - now_ms();
		struct pollfd p = { .fd = fd, .events = events };
		int r;

		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		r = poll(&p, 1, left >= INT_MAX ? INT_MAX : (int)left + 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			continue;
		if (p.revents & POLLNVAL) {
			errno = EBADF;
			return -1;
		}
		return 0;
	}
}

static int send_all(int fd, const char *buf, size_t len, long long deadline)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = send(fd, buf + done, len - done, MSG_NOSIGNAL);

		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_fd(fd, POLLOUT, deadline) < 0)
				return -1;
			continue;
		}
		if (n == 0)
			errno = EIO;
		return -1;
	}
	return 0;
}

/* Read exactly len bytes.  Returns len, fewer at EOF, or -1 with errno. */
static ssize_t recv_exact(int fd, char *buf, size_t len, long long deadline)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = recv(fd, buf + done, len - done, 0);

		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if (wait_fd(fd, POLLIN, deadline) < 0)
				return -1;
			continue;
		}
		return -1;
	}
	return (ssize_t)done;
}

static struct ub_conn *new_conn(int fd, int timeout_ms)
{
	struct ub_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = fd;
	c->timeout_ms = norm_timeout(timeout_ms);
	c->next_id = 1;
	return c;
}

int ub_connect(const char *socket_path, int timeout_ms, struct ub_conn **out)
{
	const char *path = socket_path ? socket_path : UB_DEFAULT_SOCKET;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t plen = strlen(path);
	long long deadline;
	int fd, e;

	if (!out) {
		errno = EINVAL;
		return -1;
	}
	*out = NULL;
	if (plen == 0) {
		errno = EINVAL;
		return -1;
	}
	if (plen >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sa.sun_path, path, plen + 1);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	deadline = now_ms() + norm_timeout(timeout_ms);
	for (;;) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EISCONN)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			/* AF_UNIX: the listener's backlog is full; retry until the deadline */
			long long left = deadline - now_ms();

			if (left <= 0) {
				errno = ETIMEDOUT;
				goto fail;
			}
			poll(NULL, 0, left < 10 ? (int)left : 10);
			continue;
		}
		if (errno == EINPROGRESS) {
			socklen_t elen = sizeof(e);

			if (wait_fd(fd, POLLOUT, deadline) < 0)
				goto fail;
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
				goto fail;
			if (e != 0) {
				errno = e;
				goto fail;
			}
			break;
		}
		goto fail;
	}
	*out = new_conn(fd, timeout_ms);
	if (!*out)
		goto fail;
	return 0;
fail:
	e = errno;
	close(fd);
	errno = e;
	return -1;
}

int ub_connect_fd(int fd, int timeout_ms, struct ub_conn **out)
{
	int fl, e;

	if (fd < 0) {
		errno = EBADF;
		return -1;
	}
	if (!out) {
		errno = EINVAL;
		goto fail;
	}
	*out = NULL;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		goto fail;
	fl = fcntl(fd, F_GETFD);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		goto fail;
	*out = new_conn(fd, timeout_ms);
	if (!*out)
		goto fail;
	return 0;
fail:
	e = errno;
	close(fd);
	errno = e;
	return -1;
}

void ub_set_timeout(struct ub_conn *conn, int timeout_ms)
{
	if (conn)
		conn->timeout_ms = norm_timeout(timeout_ms);
}

void ub_close(struct ub_conn *conn)
{
	int e = errno;

	if (!conn)
		return;
	close(conn->fd);
	free(conn);
	errno = e;
}

/* Record a failure on conn; errnum becomes errno.  Transport and protocol
 * failures (broken = 1) make the connection unusable. */
static int fail(struct ub_conn *conn, int broken, int errnum, const char *code,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int fail(struct ub_conn *conn, int broken, int errnum, const char *code,
		const char *fmt, ...)
{
	va_list ap;

	snprintf(conn->last.code, sizeof(conn->last.code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(conn->last.message, sizeof(conn->last.message), fmt, ap);
	va_end(ap);
	sanitize(conn->last.message);
	if (broken)
		conn->broken = 1;
	errno = errnum;
	return -1;
}

/* Failure of a send/receive system call (errno set). */
static int fail_io(struct ub_conn *conn, const char *op, const char *what)
{
	int e = errno;

	if (e == ETIMEDOUT)
		return fail(conn, 1, e, "E_UNAVAILABLE", "timed out after %d ms %s (op %s)",
			    conn->timeout_ms, what, op);
	if (e == ENOMEM)
		return fail(conn, 1, e, "E_INTERNAL", "out of memory");
	return fail(conn, 1, e, "E_UNAVAILABLE", "%s (op %s): %s", what, op, strerror(e));
}

/* params_json must be one JSON object; returns its span without whitespace. */
static int params_span(const char *p, size_t *start, size_t *end)
{
	size_t len = strlen(p);

	if (scan_document(p, len, start, end) < 0 || p[*start] != '{')
		return -1;
	return 0;
}

int ub_request(struct ub_conn *conn, const char *op, const char *params_json,
	       struct ub_response **out)
{
	size_t ps = 0, pe = 0, oplen, body_len, hdr_len;
	struct resp_block *b = NULL;
	unsigned char hdr[4];
	char *qop, *frame, prefix[64];
	unsigned long long id;
	uint32_t rlen;
	long long deadline;
	ssize_t got;
	int n;

	if (!conn || !out) {
		errno = EINVAL;
		return -1;
	}
	*out = NULL;
	if (conn->broken) {
		errno = ENOTCONN;
		return -1;
	}
	if (!op)
		return fail(conn, 0, EINVAL, "E_BAD_REQUEST", "op is NULL");
	oplen = strlen(op);
	if (oplen == 0 || oplen > MAX_OP_BYTES)
		return fail(conn, 0, EINVAL, "E_BAD_REQUEST", "op must be 1..%d bytes", MAX_OP_BYTES);
	if (params_json && params_span(params_json, &ps, &pe) < 0)
		return fail(conn, 0, EINVAL, "E_BAD_REQUEST", "params for op %s are not one JSON object", op);
	qop = ub_json_quote(op);
	if (!qop) {
		if (errno == EILSEQ)
			return fail(conn, 0, EILSEQ, "E_BAD_REQUEST", "op is not valid UTF-8");
		return fail(conn, 0, errno, "E_INTERNAL", "out of memory");
	}
	if (conn->next_id > MAX_REQUEST_ID) {
		free(qop);
		return fail(conn, 1, EOVERFLOW, "E_INTERNAL", "request ids exhausted on this connection");
	}
	id = conn->next_id;

	/* {"v":1,"id":N,"op":"...","params":{...}} */
	n = snprintf(prefix, sizeof(prefix), "{\"v\":1,\"id\":%llu,\"op\":", id);
	hdr_len = (size_t)n;
	body_len = hdr_len + strlen(qop) + (params_json ? strlen(",\"params\":") + (pe - ps) : 0) + 1;
	if (body_len > UB_MAX_REQUEST) {
		free(qop);
		return fail(conn, 0, EMSGSIZE, "E_BAD_REQUEST",
			    "request of %zu bytes is over the broker's limit of %u (op %s)",
			    body_len, UB_MAX_REQUEST, op);
	}
	frame = malloc(4 + body_len);
	if (!frame) {
		free(qop);
		return fail(conn, 0, ENOMEM, "E_INTERNAL", "out of memory");
	}
	conn->next_id++; /* consumed only by a request that is sent */
	frame[0] = (char)(body_len >> 24);
	frame[1] = (char)(body_len >> 16);
	frame[2] = (char)(body_len >> 8);
	frame[3] = (char)body_len;
	{
		char *w = frame + 4;

		memcpy(w, prefix, hdr_len);
		w += hdr_len;
		memcpy(w, qop, strlen(qop));
		w += strlen(qop);
		if (params_json) {
			memcpy(w, ",\"params\":", strlen(",\"params\":"));
			w += strlen(",\"params\":");
			memcpy(w, params_json + ps, pe - ps);
			w += pe - ps;
		}
		*w = '}';
	}
	free(qop);

	deadline = now_ms() + conn->timeout_ms;
	if (send_all(conn->fd, frame, 4 + body_len, deadline) < 0) {
		int e = errno;

		free(frame);
		errno = e;
		return fail_io(conn, op, "sending the request");
	}
	free(frame);

	got = recv_exact(conn->fd, (char *)hdr, sizeof(hdr), deadline);
	if (got < 0)
		return fail_io(conn, op, "waiting for the response");
	if (got == 0)
		return fail(conn, 1, ECONNRESET, "E_UNAVAILABLE",
			    "the broker closed the connection (op %s)", op);
	if (got < (ssize_t)sizeof(hdr))
		return fail(conn, 1, EPROTO, "E_PROTOCOL",
			    "connection closed inside a frame header (op %s)", op);
	rlen = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (rlen > UB_MAX_RESPONSE)
		return fail(conn, 1, EPROTO, "E_PROTOCOL",
			    "response frame of %u bytes is over the limit of %u (op %s)",
			    rlen, UB_MAX_RESPONSE, op);
	b = alloc_block(rlen);
	if (!b)
		return fail(conn, 1, ENOMEM, "E_INTERNAL", "out of memory");
	got = recv_exact(conn->fd, b->body, rlen, deadline);
	if (got < 0) {
		int e = errno;

		free(b);
		errno = e;
		return fail_io(conn, op, "reading the response");
	}
	if ((size_t)got < rlen) {
		free(b);
		return fail(conn, 1, EPROTO, "E_PROTOCOL",
			    "connection closed inside a frame (%zd of %u bytes, op %s)", got, rlen, op);
	}
	if (parse_block(b, id, &conn->last) < 0) {
		free(b);
		conn->broken = 1;
		errno = EPROTO;
		return -1;
	}
	clear_error(&conn->last);
	if (!b->pub.ok && strcmp(b->pub.code, "E_PROTOCOL") == 0) {
		/* the broker closes the connection after a framing error */
		conn->broken = 1;
		ub_response_error(&b->pub, &conn->last);
	}
	*out = &b->pub;
	return 0;
}

/* ------------------------------------------------------------------------
 * convenience calls
 */

/* Run op; on success *out holds an ok response and err is cleared. */
static int call(struct ub_conn *conn, const char *op, const char *params,
		struct ub_response **out, struct ub_error *err)
{
	struct ub_response *r;
	int e;

	*out = NULL;
	if (!conn) {
		set_error(err, "E_BAD_REQUEST", "no connection");
		errno = EINVAL;
		return -1;
	}
	if (ub_request(conn, op, params, &r) < 0) {
		e = errno;
		ub_conn_error(conn, err);
		if (e == ENOTCONN && err) {
			char was[sizeof(err->message)];

			memcpy(was, err->message, sizeof(was));
			snprintf(err->message, sizeof(err->message),
				 "connection unusable after an earlier error: %.200s", was);
			sanitize(err->message);
		}
		if (err && err->code[0] == '\0')
			set_error(err, "E_UNAVAILABLE", "%s", strerror(e));
		errno = e;
		return -1;
	}
	if (!r->ok) {
		ub_response_error(r, err);
		ub_response_free(r);
		errno = EREMOTEIO;
		return -1;
	}
	clear_error(err);
	*out = r;
	return 0;
}

/* Quote an optional argument; reports E_BAD_REQUEST / E_INTERNAL. */
static int quote_arg(const char *name, const char *val, char **out, struct ub_error *err)
{
	*out = NULL;
	if (!val)
		return 0;
	*out = ub_json_quote(val);
	if (*out)
		return 0;
	if (errno == EILSEQ)
		set_error(err, "E_BAD_REQUEST", "%s is not valid UTF-8", name);
	else
		set_error(err, "E_INTERNAL", "out of memory");
	return -1;
}

int ub_register(struct ub_conn *conn, const char *mountpoint, const char *fstype,
		const char *source, char **id_out, struct ub_error *err)
{
	char *qm = NULL, *qf = NULL, *qs = NULL, *params = NULL;
	struct ub_response *r = NULL;
	int ret = -1, e = 0;
	size_t len;

	if (id_out)
		*id_out = NULL;
	if (!mountpoint || !id_out) {
		set_error(err, "E_BAD_REQUEST", "mountpoint and id_out are required");
		errno = EINVAL;
		return -1;
	}
	if (quote_arg("mountpoint", mountpoint, &qm, err) < 0 ||
	    quote_arg("fstype", fstype, &qf, err) < 0 ||
	    quote_arg("source", source, &qs, err) < 0) {
		e = errno;
		goto out;
	}
	len = strlen(qm) + (qf ? strlen(qf) : 0) + (qs ? strlen(qs) : 0) + 64;
	params = malloc(len);
	if (!params) {
		e = errno;
		set_error(err, "E_INTERNAL", "out of memory");
		goto out;
	}
	snprintf(params, len, "{\"mountpoint\":%s%s%s%s%s}", qm,
		 qf ? ",\"fstype\":" : "", qf ? qf : "",
		 qs ? ",\"source\":" : "", qs ? qs : "");
	if (call(conn, "register", params, &r, err) < 0) {
		e = errno;
		goto out;
	}
	if (ub_json_get_string(r->result, r->result_len, "id", id_out) < 0 || (*id_out)[0] == '\0') {
		free(*id_out);
		*id_out = NULL;
		set_error(err, "E_PROTOCOL", "register result has no string \"id\"");
		e = EPROTO;
		goto out;
	}
	ret = 0;
out:
	ub_response_free(r);
	free(qm);
	free(qf);
	free(qs);
	free(params);
	if (ret < 0)
		errno = e;
	return ret;
}

int ub_unregister(struct ub_conn *conn, const char *id, struct ub_error *err)
{
	struct ub_response *r;
	char *qid, *params;
	size_t len;
	int e;

	if (!id) {
		set_error(err, "E_BAD_REQUEST", "id is required");
		errno = EINVAL;
		return -1;
	}
	if (quote_arg("id", id, &qid, err) < 0)
		return -1;
	len = strlen(qid) + 16;
	params = malloc(len);
	if (!params) {
		free(qid);
		set_error(err, "E_INTERNAL", "out of memory");
		errno = ENOMEM;
		return -1;
	}
	snprintf(params, len, "{\"id\":%s}", qid);
	free(qid);
	if (call(conn, "unregister", params, &r, err) < 0) {
		e = errno;
		free(params);
		errno = e;
		return -1;
	}
	free(params);
	ub_response_free(r);
	return 0;
}

int ub_ping(struct ub_conn *conn, struct ub_error *err)
{
	struct ub_response *r;

	if (call(conn, "ping", NULL, &r, err) < 0)
		return -1;
	ub_response_free(r);
	return 0;
}
