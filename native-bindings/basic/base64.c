/* base64.c: see base64.h. */
#include <errno.h>
#include <stdlib.h>

#include "basic/base64.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ub_base64_encoded_len(size_t len)
{
	return (len + 2) / 3 * 4;
}

size_t ub_base64_encode(const unsigned char *in, size_t len, char *out)
{
	size_t i, o = 0;

	for (i = 0; i + 2 < len; i += 3) {
		unsigned long v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8 | in[i + 2];

		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = alphabet[v >> 6 & 63];
		out[o++] = alphabet[v & 63];
	}
	if (i < len) {
		unsigned long v = (unsigned long)in[i] << 16 | (i + 1 < len ? (unsigned long)in[i + 1] << 8 : 0);

		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = i + 1 < len ? alphabet[v >> 6 & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

static int value_of(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

long ub_base64_decode(const char *in, size_t len, unsigned char *out)
{
	size_t i, o = 0;

	if (len % 4) {
		errno = EINVAL;
		return -1;
	}
	for (i = 0; i < len; i += 4) {
		int last = i + 4 == len;
		int pad = last ? (in[i + 3] == '=') + (in[i + 2] == '=' && in[i + 3] == '=') : 0;
		int v[4], k;

		for (k = 0; k < 4 - pad; k++) {
			v[k] = value_of(in[i + k]);
			if (v[k] < 0) {
				errno = EINVAL;
				return -1;
			}
		}
		for (; k < 4; k++)
			v[k] = 0;
		if ((pad == 2 && (v[1] & 15)) || (pad == 1 && (v[2] & 3))) {
			errno = EINVAL;          /* not canonical: stray bits before the padding */
			return -1;
		}
		out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
		if (pad < 1)
			out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
	}
	return (long)o;
}

char *ub_base64_encode_alloc(const unsigned char *in, size_t len)
{
	char *out = malloc(ub_base64_encoded_len(len) + 1);

	if (out)
		ub_base64_encode(in, len, out);
	return out;
}

int ub_base64_decode_alloc(const char *in, size_t len, unsigned char **out, size_t *out_len)
{
	unsigned char *buf = malloc(len / 4 * 3 + 1);
	long n;

	if (!buf)
		return -1;
	n = ub_base64_decode(in, len, buf);
	if (n < 0) {
		free(buf);
		return -1;
	}
	*out = buf;
	*out_len = (size_t)n;
	return 0;
}
