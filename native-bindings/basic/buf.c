/* buf.c: see buf.h. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "basic/buf.h"

void ub_free_zeroed(void *p)
{
	if (!p)
		return;
	explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

/* Moved by hand: realloc would leave the old copy in a free chunk. */
int ub_buf_append(struct ub_buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *q;

		while (cap < b->len + n + 1)
			cap *= 2;
		q = malloc(cap);
		if (!q)
			return -1;
		if (b->len)
			memcpy(q, b->p, b->len);
		ub_free_zeroed(b->p);
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

void ub_buf_free(struct ub_buf *b)
{
	ub_free_zeroed(b->p);
	memset(b, 0, sizeof(*b));
}
