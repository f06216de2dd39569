#!/bin/sh
# Install this INSIDE a container image as /usr/local/libexec/tenant-token.
# The broker runs it as a child of the container's init whenever a process in
# that container asks the kernel for a `user` key described "tenant-token:NAME";
# whatever it prints is the key's payload; a non-zero exit negates the key.
# $1 = the key description, $2 = the requester's uid inside the container,
# stdin = the callout info given to request_key(2).
name=${1#tenant-token:}
[ -r "/etc/tenant-tokens/$name" ] || exit 1
cat "/etc/tenant-tokens/$name"
