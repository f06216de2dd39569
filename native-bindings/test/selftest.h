/*
 * selftest.h: the check counter shared by the pure-C selftests
 * (context-selftest.c, upcall-request-key-selftest.c). Include it once, after
 * the code under test. Each selftest prints "FAIL ..." lines (every check with
 * -v), then "N passed, N failed".
 */
#ifndef UB_SELFTEST_H
#define UB_SELFTEST_H

#include <stdio.h>

static int passed, failed, verbose;

static void check(int ok, int line, const char *what)
{
	if (ok)
		passed++;
	else
		failed++;
	if (!ok || verbose)
		printf("%s line %d: %s\n", ok ? "ok  " : "FAIL", line, what);
}
#define CHECK(cond) check((cond), __LINE__, #cond)

#endif
