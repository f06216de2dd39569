#!/bin/sh
# build-handler.sh OUT MAIN.c [SOURCE.c ...]: link one program of the
# request-key handler (upcall-request-key, or its selftest) from the package
# root; binding.gyp runs it as an action.
#
# The kernel's requester waits for the handler to exit, once per key request,
# so its start-up is on every request's path.  On the project's VM, glibc's
# start-up alone (CPU feature and cache detection: each CPUID traps to the
# hypervisor) costs ~0.29 ms of a process's life, and the dynamic loader
# another ~0.1 ms; a static musl program starts in ~0.13 ms in all
# (docs/request-key.md, "Start-up cost").  So, the first that builds and runs:
#   1. musl (musl-gcc, Debian's musl-tools), static-pie, else static;
#   2. the C compiler ($CC, else cc), static-pie, else static;
#   3. the same, linked dynamically (as node-gyp would).
# The handler must run `OUT --version` on this machine before it is kept.
# UB_HANDLER_CC=cc skips musl (to compare, or to debug with glibc).
set -eu
out=$1
shift
cflags="-std=gnu11 -Wall -Wextra -O2 -fPIE -Inative-bindings/include -Inative-bindings"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc=${CC:-cc}

works() {
	[ -x "$tmp/out" ] || return 1
	case $(basename "$out") in
	upcall-request-key) "$tmp/out" --version >/dev/null 2>&1 ;;
	esac
}

keep() {
	# the kept build's warnings (the project builds with none)
	[ -s "$tmp/err" ] && cat "$tmp/err" >&2
	mv -f "$tmp/out" "$out"
	echo "build-handler.sh: $(basename "$out"): $1"
	exit 0
}

try_musl() {
	command -v musl-gcc >/dev/null 2>&1 || return 1
	[ "${UB_HANDLER_CC:-}" = cc ] && return 1
	# Debian's wrapper names its specs file; its folder holds musl's crt files.
	lib=$(sed -n 's|.*-specs "\(.*\)/musl-gcc.specs".*|\1|p' "$(command -v musl-gcc)")
	mkdir -p "$tmp/o"
	for src in "$@"; do
		musl-gcc $cflags -c "$src" -o "$tmp/o/$(basename "$src" .c).o" || return 1
	done
	real=${REALGCC:-$(sed -n 's|.*exec "${REALGCC:-\([^}]*\)}".*|\1|p' "$(command -v musl-gcc)")}
	real=${real:-gcc}
	# static-pie: musl's rcrt1.o self-relocates; the wrapper's specs always
	# ask for a dynamic linker, so link with the real gcc and musl's files.
	if [ -n "$lib" ] && [ -f "$lib/rcrt1.o" ] &&
	   "$real" -static-pie -nostdlib -nostartfiles "$lib/rcrt1.o" "$lib/crti.o" \
		"$("$real" -print-file-name=crtbeginS.o)" "$tmp"/o/*.o -L"$lib" -lc \
		"$("$real" -print-libgcc-file-name)" "$("$real" -print-file-name=crtendS.o)" "$lib/crtn.o" \
		-o "$tmp/out" 2>"$tmp/err" && works; then
		keep "musl, static-pie"
	fi
	if musl-gcc -static "$tmp"/o/*.o -o "$tmp/out" 2>"$tmp/err" && works; then
		keep "musl, static"
	fi
	return 1
}

try_musl "$@" || true
for link in -static-pie -static ""; do
	# shellcheck disable=SC2086
	if $cc $cflags $link "$@" -o "$tmp/out" 2>"$tmp/err" && works; then
		keep "$cc ${link:-(dynamic)}"
	fi
done
cat "$tmp/err" >&2
echo "build-handler.sh: cannot build $out" >&2
exit 1
