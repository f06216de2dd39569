/*
 * ub-json.h: the JSON scanner shared by the C client, the request-key handler
 * and the zygote (implementation: basic/json.c).  Public: ub-client.h
 * includes it, and C clients read results with it.
 */
#ifndef UB_JSON_H
#define UB_JSON_H

#include <stddef.h>

/* Deepest nesting of arrays/objects the JSON scanner accepts. */
#define UB_JSON_MAX_DEPTH 64

/*
 * The JSON scanner, for reading fields of a result.  All functions take a
 * pointer and a length (the text need not be NUL-terminated), never read
 * outside [json, json + len), and accept only strict RFC 8259 JSON in valid
 * UTF-8 with nesting at most UB_JSON_MAX_DEPTH.  Malformed input gives -1
 * with errno EBADMSG.
 */

/* ub_json_validate: 0 if [json, json+len) is exactly one JSON value with
 * optional surrounding whitespace; else -1, errno EBADMSG. */
int ub_json_validate(const char *json, size_t len);

/* ub_json_find: in the JSON object [json, json+len) (surrounding whitespace
 * allowed), find the member whose decoded name equals key and store its raw
 * value span in *val / *val_len (pointing into json, not NUL-terminated).
 * The whole object is scanned and validated.  Returns 0; or -1 with errno
 * ENOENT (no such member), EBADMSG (malformed, not an object, or the name
 * occurs more than once: duplicates are ambiguous and refused), EINVAL (NULL
 * argument). */
int ub_json_find(const char *json, size_t len, const char *key,
		 const char **val, size_t *val_len);

/* ub_json_get_string: like ub_json_find, then decode the member's value,
 * which must be a JSON string (escapes decoded, \uXXXX surrogate pairs
 * joined into UTF-8; a lone surrogate or U+0000 is refused with EBADMSG).
 * On success *out is a malloc'd NUL-terminated copy; free(3) it.  Returns 0
 * or -1 (errno ENOENT, EBADMSG incl. "not a string", EINVAL, ENOMEM). */
int ub_json_get_string(const char *json, size_t len, const char *key, char **out);

/* ub_json_decode_string: decode one JSON string token [tok, tok+tok_len)
 * including its quotes, as ub_json_get_string does.  *out malloc'd, free(3)
 * it.  Returns 0 or -1 (EBADMSG, EINVAL, ENOMEM). */
int ub_json_decode_string(const char *tok, size_t tok_len, char **out);

/* ub_json_quote: s as a JSON string literal including the quotes: '"', '\\'
 * and control characters (< 0x20 and 0x7f) escaped, other bytes copied.
 * Returns a malloc'd string (free(3) it), or NULL with errno EINVAL (s NULL),
 * EILSEQ (s is not valid UTF-8: overlong, surrogate, > U+10FFFF, truncated)
 * or ENOMEM.  For building params_json with snprintf. */
char *ub_json_quote(const char *s);

/* ub_json_escape: append the body of s as a JSON string (no quotes) to
 * out[pos..cap): '"', '\\' and control characters (< 0x20, 0x7f) escaped,
 * valid UTF-8 copied, a byte that is not UTF-8 written as '?'.  Stops before
 * a character that would not fit with the NUL; NUL-terminates; returns the
 * new length.  For messages built into fixed buffers. */
size_t ub_json_escape(char *out, size_t pos, size_t cap, const char *s);

/*
 * Lower level, for the client's response parser and the zygote's request
 * parser.
 */

/* ub_json_members: scan and validate the whole object [json, json+len) and
 * find the members named keys[0..nkeys): spans[2*i], spans[2*i+1] receive the
 * offsets of keys[i]'s value, or (0, 0) if absent.  Returns 0, or -1 with
 * *dup the index of a duplicated key (else -1) on malformed input. */
int ub_json_members(const char *json, size_t len, const char *const *keys,
		    size_t nkeys, size_t *spans, int *dup);

/* ub_json_value_span: as ub_json_validate, and *vstart, *vend (may be NULL)
 * get the value's offsets without the whitespace around it. */
int ub_json_value_span(const char *json, size_t len, size_t *vstart, size_t *vend);

/* A lone surrogate or U+0000 escape decodes to U+FFFD instead of failing. */
#define UB_JSON_LENIENT 1

/* ub_json_decode_token: decode the validated string token [tok, tok+tok_len)
 * (with its quotes) into dst, which has room for tok_len bytes and may be tok
 * itself (decoding in place).  NUL-terminates; returns the length or -1. */
long ub_json_decode_token(const char *tok, size_t tok_len, char *dst, int flags);

/* A value of a document already validated by ub_json_validate. */
struct ub_json_span {
	const char *p;
	size_t len;
};

/* The members of an object, or the elements of an array, in order. */
struct ub_json_iter {
	const char *p;
	size_t len, pos;
	int obj;
};

void ub_json_iter_begin(struct ub_json_iter *it, struct ub_json_span container);

/* 1 and the next member (key: its string token, with quotes; NULL-free for
 * arrays: key is left alone), 0 at the end, -1 on malformed input. */
int ub_json_iter_next(struct ub_json_iter *it, struct ub_json_span *key, struct ub_json_span *val);

/* s is exactly the text lit (a literal such as true, or a token such as "exec"). */
int ub_json_is(struct ub_json_span s, const char *lit);

/* s is a JSON integer in 0..max (digits only, at most 16): 0 and *out, else -1. */
int ub_json_uint(struct ub_json_span s, unsigned long long max, unsigned long long *out);

/* s is a string token: decoded into *out (malloc'd) as ub_json_decode_string. */
int ub_json_string(struct ub_json_span s, char **out);

#endif /* UB_JSON_H */
