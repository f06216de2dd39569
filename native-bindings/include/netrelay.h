/*
 * netrelay: the builtin an upcall child runs inside a container for DNS.
 * It reads the container's resolver files and relays DNS messages from the
 * container's network namespace; all DNS logic stays in the broker
 * (src/upcall/dns/). Wire format on fds 0 (requests) and 1 (replies):
 *
 *   request  = u32be len, then len bytes: u8 op, payload
 *     op 'F' (file):  payload = path (read-only, regular file, at most 1 MiB),
 *                     resolved inside our root: openat2 RESOLVE_IN_ROOT |
 *                     RESOLVE_NO_MAGICLINKS, by hand where seccomp refuses openat2
 *     op 'Q' (query): payload = u8 proto (0 udp, 1 tcp), u16be port,
 *                     u32be timeout_ms, u8 addrlen, addr (text), dns message
 *   reply    = u32be len, then len bytes: u8 status (0 ok, else an errno),
 *              payload (file contents or the reply message)
 *
 * Requests are answered in order. Replies to requests that arrived together
 * (read in one read(2)) go out together, in one write(2), so the zygote wakes
 * once for them; a reply is never held back while the relay blocks (waiting
 * for input, or on a DNS query).
 *
 * EOF on fd 0 ends the relay with status 0.
 */
#ifndef UB_NETRELAY_H
#define UB_NETRELAY_H

#include "ub-wire.h" /* UB_NETRELAY_MAX_FILE, UB_NETRELAY_MAX_MSG, UB_FRAME_HEADER */

/* Serve requests from `in` until EOF; returns 0, or an errno on a broken stream. */
int netrelay_serve(int in, int out);

#endif
