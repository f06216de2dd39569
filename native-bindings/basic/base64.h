/*
 * base64.h: RFC 4648 base64 (standard alphabet, '=' padding), for the
 * zygote's payloads (stdinBase64 in, stdoutBase64/stderrBase64 out) and the
 * request-key handler's (callout in, payloadBase64 out).
 */
#ifndef UB_BASE64_H
#define UB_BASE64_H

#include <stddef.h>

/* Characters needed to encode len bytes, without the terminating NUL. */
size_t ub_base64_encoded_len(size_t len);

/* Encode [in, in+len) into out (ub_base64_encoded_len(len) + 1 bytes,
 * NUL-terminated); returns the encoded length. */
size_t ub_base64_encode(const unsigned char *in, size_t len, char *out);

/* Decode [in, in+len) into out (at least len / 4 * 3 bytes).  Strict: only
 * the alphabet, length a multiple of 4, padding only at the end, no stray
 * bits before it (the canonical form only).  Returns the decoded length, or
 * -1 (errno EINVAL) for malformed input. */
long ub_base64_decode(const char *in, size_t len, unsigned char *out);

/* The same into malloc'd memory: a NUL-terminated string, or NULL (ENOMEM). */
char *ub_base64_encode_alloc(const unsigned char *in, size_t len);

/* 0 and *out (malloc'd, *out_len bytes), or -1 (EINVAL malformed, ENOMEM). */
int ub_base64_decode_alloc(const char *in, size_t len, unsigned char **out, size_t *out_len);

#endif /* UB_BASE64_H */
