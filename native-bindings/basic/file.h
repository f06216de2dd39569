/*
 * file.h: reading whole files (mostly of /proc) and whole streams.
 */
#ifndef UB_FILE_H
#define UB_FILE_H

#include <stddef.h>
#include <sys/types.h>

/* Read fd until EOF or until cap bytes; EINTR retried.  The byte count, or
 * -1 with errno. */
ssize_t ub_read_all(int fd, void *buf, size_t cap);

/* Write all of [buf, buf+len) to a blocking fd; EINTR retried.  0 or -1. */
int ub_write_all(int fd, const void *buf, size_t len);

/* Exactly len bytes: 1, 0 at EOF before the first byte, or -1 (errno;
 * EPROTO for EOF in the middle). */
int ub_read_exact(int fd, void *buf, size_t len);

/* The whole of dirfd/name (AT_FDCWD and a path work too), malloc'd and
 * NUL-terminated; *len (may be NULL) gets its length.  -1 with errno, EFBIG
 * when it is longer than max. */
int ub_read_file_at(int dirfd, const char *name, size_t max, char **out, size_t *len);

/* A small file into out, NUL-terminated, cut at cap - 1 bytes.  0 or -1. */
int ub_read_small_at(int dirfd, const char *name, char *out, size_t cap);

/* A small file held open (a /proc file of a process: each read from offset 0
 * shows its current values) read again with one pread(2) at offset 0, into
 * out, NUL-terminated, cut at cap - 1 bytes as ub_read_small_at: a /proc file
 * hands out all it has in one read (seq_file, simple_read_from_buffer), so no
 * second read looks for EOF.  0 or -1 with errno. */
int ub_pread_small(int fd, char *out, size_t cap);

#endif /* UB_FILE_H */
