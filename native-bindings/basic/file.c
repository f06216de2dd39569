/* file.c: see file.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "basic/file.h"

ssize_t ub_read_all(int fd, void *buf, size_t cap)
{
	size_t n = 0;

	while (n < cap) {
		ssize_t r = read(fd, (char *)buf + n, cap - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	return (ssize_t)n;
}

int ub_write_all(int fd, const void *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		buf = (const char *)buf + n;
		len -= (size_t)n;
	}
	return 0;
}

int ub_read_exact(int fd, void *buf, size_t len)
{
	ssize_t n = ub_read_all(fd, buf, len);

	if (n < 0)
		return -1;
	if ((size_t)n == len)
		return 1;
	if (n == 0)
		return 0;
	errno = EPROTO;
	return -1;
}

static int fail_closing(int fd, char *buf, int err)
{
	free(buf);
	if (fd >= 0)
		close(fd);
	errno = err;
	return -1;
}

int ub_read_file_at(int dirfd, const char *name, size_t max, char **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (!buf || fd < 0)
		return fail_closing(fd, buf, fd < 0 ? errno : ENOMEM);
	for (;;) {
		ssize_t r = ub_read_all(fd, buf + n, cap - 1 - n);

		if (r < 0)
			return fail_closing(fd, buf, errno);
		n += (size_t)r;
		if (n < cap - 1)
			break;          /* EOF before the buffer was full */
		if (cap - 1 >= max)
			return fail_closing(fd, buf, EFBIG);
		{
			char *more = realloc(buf, cap * 2 - 1 > max ? max + 1 : cap * 2);

			if (!more)
				return fail_closing(fd, buf, ENOMEM);
			cap = cap * 2 - 1 > max ? max + 1 : cap * 2;
			buf = more;
		}
	}
	close(fd);
	buf[n] = '\0';
	*out = buf;
	if (len)
		*len = n;
	return 0;
}

int ub_read_small_at(int dirfd, const char *name, char *out, size_t cap)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = ub_read_all(fd, out, cap - 1);
	if (n < 0)
		return fail_closing(fd, NULL, errno);
	close(fd);
	out[n] = '\0';
	return 0;
}

int ub_pread_small(int fd, char *out, size_t cap)
{
	ssize_t n;

	do
		n = pread(fd, out, cap - 1, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	out[n] = '\0';
	return 0;
}
