#!/bin/sh
# static-ldflags.sh: the link flags for upcall-request-key, printed for
# binding.gyp (run by node-gyp configure, from the package root).
#
# The handler is exec'd once per kernel key request, and the requester waits
# for it to exit: a static binary skips the dynamic loader (opening and
# mapping libc, relocations, symbol binding), about 0.2 ms of each request on
# the project's VM (docs/request-key.md, "Start-up cost").  -static-pie keeps
# ASLR.  Where the C library has no static archive (Fedora without
# glibc-static, say), this prints nothing and the handler links dynamically,
# as before.
cc=${CC:-cc}
dir=$(mktemp -d 2>/dev/null) || exit 0
trap 'rm -rf "$dir"' EXIT
cat >"$dir/probe.c" <<'PROBE'
#include <getopt.h>
#include <stdio.h>
#include <syslog.h>
int main(int argc, char **argv)
{
	openlog("probe", LOG_PID, LOG_DAEMON);
	return getopt_long(argc, argv, "", NULL, NULL) == -1 ? printf("%s\n", argv[0]) < 0 : 1;
}
PROBE
for flag in -static-pie -static; do
	if $cc -fPIE "$flag" -o "$dir/probe" "$dir/probe.c" >/dev/null 2>&1 && "$dir/probe" >/dev/null 2>&1; then
		echo "$flag"
		exit 0
	fi
done
exit 0
