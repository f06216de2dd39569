/*
 * json.c: the JSON scanner (strict RFC 8259: validate, find members, decode
 * strings), the walk over a validated document, and string escaping.  Used by
 * the C client (client/), the request-key handler and the zygote.  libc only;
 * no global mutable state.  See ub-json.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ub-json.h"
#include "basic/utf8.h"

/* ------------------------------------------------------------------------
 * JSON scanner.  Every function works on [s, s + len) and checks bounds
 * before each access.
 */

struct scan {
	const unsigned char *s;
	size_t len;
	size_t pos;
};

/* The two-character escapes: pairs of the letter after '\\' and the byte it
 * stands for. */
static const char short_escapes[] = "\"\"\\\\//b\bf\fn\nr\rt\t";

/* The byte "\\<letter>" stands for, or -1. */
static int unescape_short(unsigned char letter)
{
	for (size_t i = 0; short_escapes[i]; i += 2)
		if ((unsigned char)short_escapes[i] == letter)
			return (unsigned char)short_escapes[i + 1];
	return -1;
}

/* The letter that escapes byte c ('/' is never escaped), or 0. */
static char escape_short(unsigned char c)
{
	for (size_t i = 0; short_escapes[i]; i += 2)
		if ((unsigned char)short_escapes[i + 1] == c && c != '/')
			return short_escapes[i];
	return 0;
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
			if (unescape_short(sc->s[pos + 1]) >= 0)
				pos += 2;
			else if (sc->s[pos + 1] == 'u' && sc->len - pos >= 6 && hex4(sc->s + pos + 2) >= 0)
				pos += 6;
			else
				return -1;
			continue;
		}
		{
			size_t n = ub_utf8_seq(sc->s + pos, sc->len - pos);

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
int ub_json_value_span(const char *json, size_t len, size_t *vstart, size_t *vend)
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
	if (ub_json_value_span(json, len, NULL, NULL) < 0) {
		errno = EBADMSG;
		return -1;
	}
	return 0;
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
		size_t k = ub_utf8_seq(s + pos, end - pos);

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
			} else if (flags & UB_JSON_LENIENT) {
				cp = 0xfffd;
			} else {
				return -1;
			}
		} else if (cp >= 0xdc00 && cp <= 0xdfff) {
			if (!(flags & UB_JSON_LENIENT))
				return -1;
			cp = 0xfffd;
		}
		if (cp == 0) {
			if (!(flags & UB_JSON_LENIENT))
				return -1;
			cp = 0xfffd;
		}
		*n = ub_utf8_put(out, cp);
		*i = pos;
		return 0;
	default:
		if (unescape_short(s[pos + 1]) < 0)
			return -1;
		cp = (unsigned long)unescape_short(s[pos + 1]);
	}
	out[0] = (unsigned char)cp;
	*n = 1;
	*i = pos + 2;
	return 0;
}

/* Decode the validated string token [tok, tok + tok_len) (with quotes) into
 * dst, which has room for tok_len bytes; dst may equal tok (in place).
 * NUL-terminates.  Returns the decoded length or -1. */
long ub_json_decode_token(const char *token, size_t tok_len, char *dst, int flags)
{
	const unsigned char *tok = (const unsigned char *)token;
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
int ub_json_members(const char *json, size_t len, const char *const *keys,
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
	if (ub_json_members(json, len, &key, 1, spans, &dup) < 0) {
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
	if (ub_json_decode_token(tok, tok_len, buf, 0) < 0) {
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

/* The escaped form of c (a byte < 0x80) that needs one: its length, or 0. */
static size_t escape_ascii(unsigned char c, char out[7])
{
	static const char hex[] = "0123456789abcdef";
	char esc = escape_short(c);

	if (esc) {
		out[0] = '\\';
		out[1] = esc;
		return 2;
	}
	if (c < 0x20 || c == 0x7f) {
		memcpy(out, "\\u00", 4);
		out[4] = hex[c >> 4];
		out[5] = hex[c & 15];
		return 6;
	}
	return 0;
}

size_t ub_json_escape(char *out, size_t pos, size_t cap, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t len = strlen(str), i = 0;

	while (i < len) {
		char esc[7];
		size_t n = s[i] < 0x80 ? escape_ascii(s[i], esc) : 0, k = n ? 1 : ub_utf8_seq(s + i, len - i);
		const char *from = n ? esc : (const char *)s + i;

		if (k == 0) {                   /* not UTF-8 */
			from = "?";
			n = k = 1;
		} else if (!n) {
			n = k;
		}
		if (pos + n >= cap)
			break;
		memcpy(out + pos, from, n);
		pos += n;
		i += k;
	}
	if (cap)
		out[pos < cap ? pos : cap - 1] = '\0';
	return pos;
}

char *ub_json_quote(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t len, need = 3;
	char *out, esc[7];

	if (!str) {
		errno = EINVAL;
		return NULL;
	}
	len = strlen(str);
	if (!ub_utf8_valid(str, len)) {
		errno = EILSEQ;
		return NULL;
	}
	for (size_t i = 0; i < len; i++)
		need += s[i] < 0x80 && escape_ascii(s[i], esc) ? escape_ascii(s[i], esc) : 1;
	out = malloc(need);
	if (!out)
		return NULL;
	out[0] = '"';
	len = ub_json_escape(out, 1, need, str);
	out[len] = '"';
	out[len + 1] = '\0';
	return out;
}

/* ------------------------------------------------------------------------
 * a validated document: its members one by one, its scalars
 */

void ub_json_iter_begin(struct ub_json_iter *it, struct ub_json_span container)
{
	it->p = container.p;
	it->len = container.len;
	it->pos = container.len ? 1 : 0;
	it->obj = container.len && container.p[0] == '{';
}

int ub_json_iter_next(struct ub_json_iter *it, struct ub_json_span *key, struct ub_json_span *val)
{
	struct scan sc = { (const unsigned char *)it->p, it->len, it->pos };
	size_t start;

	skip_ws(&sc);
	if (sc.pos < sc.len && sc.s[sc.pos] == ',') {
		sc.pos++;
		skip_ws(&sc);
	}
	if (sc.pos >= sc.len || sc.s[sc.pos] == '}' || sc.s[sc.pos] == ']')
		return 0;
	if (it->obj) {
		start = sc.pos;
		if (scan_string(&sc) < 0)
			return -1;
		key->p = it->p + start;
		key->len = sc.pos - start;
		skip_ws(&sc);
		if (sc.pos >= sc.len || sc.s[sc.pos] != ':')
			return -1;
		sc.pos++;
		skip_ws(&sc);
	}
	start = sc.pos;
	if (scan_value(&sc, 1) < 0)
		return -1;
	val->p = it->p + start;
	val->len = sc.pos - start;
	it->pos = sc.pos;
	return 1;
}

int ub_json_is(struct ub_json_span s, const char *lit)
{
	return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

int ub_json_uint(struct ub_json_span s, unsigned long long max, unsigned long long *out)
{
	unsigned long long v = 0;

	if (s.len == 0 || s.len > 16 || (s.p[0] == '0' && s.len > 1))
		return -1;
	for (size_t i = 0; i < s.len; i++) {
		if (s.p[i] < '0' || s.p[i] > '9')
			return -1;
		v = v * 10 + (unsigned long long)(s.p[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

int ub_json_string(struct ub_json_span s, char **out)
{
	return s.len && s.p[0] == '"' ? ub_json_decode_string(s.p, s.len, out) : -1;
}
