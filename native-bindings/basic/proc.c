/* proc.c: see proc.h. */
#include <errno.h>
#include <string.h>

#include "basic/proc.h"

int ub_proc_stat_field(const char *stat, size_t len, int n, unsigned long long *out)
{
	const char *p = NULL, *end = stat + len;
	unsigned long long v = 0;
	int field;

	for (const char *q = stat; q < end; q++)
		if (*q == ')')
			p = q;
	if (!p || n < 3 || end - p < 2) {
		errno = EBADMSG;
		return -1;
	}
	p += 2;                 /* ") " then field 3 */
	for (field = 3; field < n && p < end; p++)
		if (*p == ' ')
			field++;
	if (field != n || p >= end || *p < '0' || *p > '9') {
		errno = EBADMSG;
		return -1;
	}
	for (; p < end && *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (unsigned)(*p - '0');
	*out = v;
	return 0;
}

int ub_proc_start_time(const char *stat, unsigned long long *out)
{
	return ub_proc_stat_field(stat, strlen(stat), UB_STAT_START_TIME, out);
}
