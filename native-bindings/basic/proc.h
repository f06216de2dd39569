/*
 * proc.h: parsing /proc/<pid>/stat.  Field 2 (comm) may hold spaces and ')':
 * the fields after it are counted from the last ')'.
 */
#ifndef UB_PROC_H
#define UB_PROC_H

#include <stddef.h>

/* Field n (3 and up, as proc(5) numbers them) of the stat text [stat,
 * stat+len), a non-negative decimal integer: 0 and *out, or -1 (EBADMSG). */
int ub_proc_stat_field(const char *stat, size_t len, int n, unsigned long long *out);

#define UB_STAT_PPID 4
#define UB_STAT_START_TIME 22           /* clock ticks since boot */
#define UB_STAT_EXIT_CODE 52            /* in wait() form (Linux 3.5) */

/* Field 22 (starttime) of a NUL-terminated stat text. */
int ub_proc_start_time(const char *stat, unsigned long long *out);

#endif /* UB_PROC_H */
