/*
 * selftest.h: the one harness of the C selftests (context-selftest.c,
 * ub-client-selftest.c, upcall-request-key-selftest.c,
 * zygote-wire-selftest.c).  Include it once, after the code under test.
 * Each selftest prints "FAIL ..." lines (every check with -v), then
 * "N passed, N failed" (selftest_done()); the unit tests in tests/unit/ run
 * them and read that line.
 */
#ifndef UB_SELFTEST_H
#define UB_SELFTEST_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed, verbose;

/* CHECK(cond) passes an empty format: the condition's text is said instead. */
#pragma GCC diagnostic ignored "-Wformat-zero-length"

static void __attribute__((format(printf, 4, 5))) check(int ok, int line, const char *what, const char *fmt, ...)
{
	va_list ap;

	if (ok)
		passed++;
	else
		failed++;
	if (ok && !verbose)
		return;
	printf("%s line %d: ", ok ? "ok  " : "FAIL", line);
	va_start(ap, fmt);
	if (*fmt)
		vprintf(fmt, ap);
	else
		fputs(what, stdout);
	va_end(ap);
	putchar('\n');
}

/* CHECK(cond) says the condition; CHECK(cond, "fmt", ...) says fmt. */
#define CHECK(cond, ...) check(!!(cond), __LINE__, #cond, "" __VA_ARGS__)

/* -v: every check, not only the failures. */
static __attribute__((unused)) void selftest_init(int argc, char **argv)
{
	verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
}

/* The last line, and main's status. */
static __attribute__((unused)) int selftest_done(void)
{
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}

/* An exact-size heap copy of [s, s+len): reading one byte past it is a bug
 * that ASan or valgrind shows. */
static __attribute__((unused)) char *exact(const char *s, size_t len)
{
	char *p = malloc(len ? len : 1);

	if (!p)
		abort();
	memcpy(p, s, len);
	return p;
}

#endif
