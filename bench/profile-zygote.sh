#!/bin/sh
# Where a spawn's time goes inside the zygote: builds upcall-zygote with
# -DUB_ZYGOTE_PROFILE into a temporary directory (every process of a request
# stamps CLOCK_MONOTONIC into a shared page; the zygote appends one line per
# request to /tmp/ub-zygote-profile.<pid>.log), runs N spawns against a light
# container with and without the context cache, and prints the median time of
# each step since the request was parsed.
#   bench/profile-zygote.sh [N] [exec|builtin] [plain|unusual]     (root; after npm run build)
set -eu
cd "$(dirname "$0")/.."
out=$(mktemp -d /tmp/ub-zygote-prof-XXXXXX)
trap 'rm -rf "$out" /tmp/ub-zygote-profile.*.log' EXIT
cc=${CC:-gcc}
n=native-bindings
$cc -std=gnu11 -O2 -Wall -Wextra -DUB_ZYGOTE_PROFILE -I$n/include -I$n -o "$out/upcall-zygote" \
  $n/zygote/*.c $n/basic/*.c $n/context/*.c $n/client/*.c $n/netrelay/*.c
node dist/bench/profile-zygote.js "$out" "${1:-300}" "${2:-builtin}" "${3:-unusual}"
