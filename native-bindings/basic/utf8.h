/*
 * utf8.h: strict UTF-8 (RFC 3629), for the JSON scanner and for every check
 * of text that crosses a process boundary.
 */
#ifndef UB_UTF8_H
#define UB_UTF8_H

#include <stddef.h>

/* Length (1..4) of the valid UTF-8 sequence at s, or 0: rejects stray
 * continuation bytes, overlong forms, UTF-16 surrogates, > U+10FFFF and
 * sequences cut by the end of the buffer (avail bytes). */
size_t ub_utf8_seq(const unsigned char *s, size_t avail);

/* 1 if [str, str+len) is valid UTF-8, else 0.  U+0000 is valid UTF-8:
 * callers that refuse NUL bytes check for them themselves. */
int ub_utf8_valid(const char *str, size_t len);

/* Encode code point cp (<= U+10FFFF, not a surrogate) into out; returns
 * the number of bytes (1..4). */
size_t ub_utf8_put(unsigned char out[4], unsigned long cp);

#endif /* UB_UTF8_H */
