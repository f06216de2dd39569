/*
 * buf.h: a growing byte buffer whose memory is zeroed before it is freed or
 * moved (the zygote's children copy its heap: they must find nothing of
 * other requests in it).
 */
#ifndef UB_BUF_H
#define UB_BUF_H

#include <stddef.h>

struct ub_buf {
	char *p;
	size_t len, cap;
};

/* free(3) after zeroing all of the allocation (malloc_usable_size). */
void ub_free_zeroed(void *p);

/* Append [p, p+n), keeping a NUL after the data.  0 or -1 (ENOMEM). */
int ub_buf_append(struct ub_buf *b, const void *p, size_t n);

void ub_buf_free(struct ub_buf *b);

#endif /* UB_BUF_H */
