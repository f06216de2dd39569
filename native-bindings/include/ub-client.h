/*
 * ub-client.h: a small C client for the upcall-broker socket protocol
 * (docs/protocol.md), for filesystem helpers written in C (mount helpers,
 * cifs.upcall-style programs) and for the request-key handler.
 *
 * Wire format: UNIX stream socket; every message is a 4-byte big-endian
 * length followed by that many bytes of UTF-8 JSON.
 *
 *   request   {"v":1,"id":N,"op":"...","params":{...}}
 *   response  {"v":1,"id":N,"ok":true,"result":...}
 *             {"v":1,"id":N,"ok":false,"error":{"code":"E_...","message":"..."}}
 *
 * Design rules:
 *   - libc only; no global or static mutable state, no threads, no signal
 *     handlers.  Different connections may be used from different threads;
 *     one connection must not be used by two threads at once.
 *   - Every blocking step (connect, send, receive) is bounded by the
 *     connection's timeout (poll(2) on a non-blocking socket).  EINTR is
 *     retried until that deadline.  The socket is SOCK_CLOEXEC, and sends use
 *     MSG_NOSIGNAL, so a closed peer gives EPIPE, never SIGPIPE.
 *   - One request is in flight per connection: ub_request() sends, then reads
 *     exactly one response frame, which must carry the request's id.
 *   - Everything read from the socket is treated as hostile: frames over
 *     UB_MAX_RESPONSE bytes, invalid JSON (including invalid UTF-8, nesting
 *     deeper than UB_JSON_MAX_DEPTH, trailing garbage), a malformed envelope
 *     or a wrong id are protocol errors (E_PROTOCOL).  After a transport or
 *     protocol error the connection is unusable (the stream cannot be
 *     resynchronised); close it and connect again.
 *
 * Error reporting: functions return 0 on success and -1 on failure with errno
 * set.  The convenience calls (ub_register, ub_unregister, ub_ping) also fill
 * a struct ub_error.  Its code is either the broker's (E_PERMISSION,
 * E_NS_NOT_OWNED, E_BAD_REQUEST, ...) or one of these client-side codes:
 *
 *   E_UNAVAILABLE  the broker cannot be reached: connect failed or timed out,
 *                  it closed the connection, or it did not answer in time
 *   E_PROTOCOL     the broker's bytes violate the protocol (bad frame, bad
 *                  JSON, bad envelope, wrong id)
 *   E_BAD_REQUEST  refused before sending: invalid argument (NULL, not valid
 *                  UTF-8, params not one JSON object, request over 64 KiB)
 *   E_INTERNAL     out of memory or an unexpected system error
 *
 * Every function that allocates returns memory owned by the caller, to be
 * released with the function named in its comment (free(3) for plain
 * strings).  Strings are NUL-terminated; decoded JSON strings are UTF-8 and
 * never contain U+0000 (such a string is refused as E_PROTOCOL).
 */
#ifndef UB_CLIENT_H
#define UB_CLIENT_H

#include <stddef.h>
#include "ub-json.h"
#include "ub-wire.h" /* UB_DEFAULT_SOCKET */

#ifdef __cplusplus
extern "C" {
#endif

/* The admin socket (0600, root) and the conventional tenant socket path. */
#define UB_TENANT_SOCKET "/run/upcall-broker/tenant.sock"

/* Used when a timeout argument is <= 0: nothing ever waits forever. */
#define UB_DEFAULT_TIMEOUT_MS 5000
/* Largest response frame body accepted (docs/protocol.md: up to 16 MiB). */
#define UB_MAX_RESPONSE (16u * 1024u * 1024u)
/* Largest request frame body the broker accepts; larger ones are refused
 * client-side (E_BAD_REQUEST, EMSGSIZE) and never sent. */
#define UB_MAX_REQUEST 65536u

/* A failure, as a code and a one-line message (control characters replaced
 * by '?', truncated to fit on a UTF-8 character boundary).  code is "" when
 * no error is recorded. */
struct ub_error {
	char code[32];
	char message[256];
};

/* One parsed response.  Allocated by ub_request() or ub_parse_response() as a
 * single block (struct and frame text together); release it with
 * ub_response_free(), after which no pointer below may be used.  code and
 * message are never NULL. */
struct ub_response {
	int ok;                 /* 1: "ok":true, 0: "ok":false */
	const char *code;       /* error.code, e.g. "E_NOT_FOUND"; "" when ok */
	const char *message;    /* error.message, decoded (a lone surrogate
	                           escape becomes U+FFFD); "" when ok */
	const char *result;     /* raw JSON text of "result", validated and
	                           NUL-terminated (may be "null"); NULL when !ok */
	size_t result_len;      /* strlen(result); 0 when !ok */
};

struct ub_conn; /* opaque */

/*
 * ub_connect: connect to the broker's socket.
 *   socket_path  NULL means UB_DEFAULT_SOCKET.
 *   timeout_ms   bounds the connect and, afterwards, each ub_request() call
 *                (from its start to the full response); <= 0 means
 *                UB_DEFAULT_TIMEOUT_MS.
 *   out          receives the connection; release it with ub_close().
 * Returns 0, or -1 with errno set and *out set to NULL: ENOENT, ECONNREFUSED,
 * EACCES... from connect(2); ETIMEDOUT when the listener's backlog stayed full
 * until the deadline; ENAMETOOLONG (path does not fit sun_path); EINVAL (out
 * NULL or empty path); ENOMEM.  Use ub_connect_error() to turn this into a
 * struct ub_error (always E_UNAVAILABLE).
 */
int ub_connect(const char *socket_path, int timeout_ms, struct ub_conn **out);

/*
 * ub_connect_fd: wrap an already connected UNIX stream socket (for example
 * one inherited from a supervisor, or one end of a socketpair in tests).
 * Takes ownership of fd on success and on failure (it is closed then); sets
 * O_NONBLOCK and FD_CLOEXEC on it.  timeout_ms as for ub_connect().
 * Returns 0, or -1 with errno EBADF (fd < 0), EINVAL (out NULL), ENOMEM, or
 * an fcntl(2) error.
 */
int ub_connect_fd(int fd, int timeout_ms, struct ub_conn **out);

/* ub_connect_error: fill *err (if not NULL) for a failed ub_connect():
 * code E_UNAVAILABLE, message "cannot connect to PATH: <strerror(errnum)>"
 * ("timed out connecting to PATH" for ETIMEDOUT).  socket_path NULL means
 * UB_DEFAULT_SOCKET. */
void ub_connect_error(struct ub_error *err, const char *socket_path, int errnum);

/* ub_set_timeout: change the per-request timeout of conn (<= 0: default).
 * For ops that legitimately take long, such as upcalls. */
void ub_set_timeout(struct ub_conn *conn, int timeout_ms);

/* ub_close: close the socket and free conn.  NULL is a no-op.  Preserves
 * errno. */
void ub_close(struct ub_conn *conn);

/*
 * ub_request: send one request and read its response.
 *   op           operation name, 1..64 bytes of valid UTF-8 (escaped here).
 *   params_json  NULL (no "params"), or the text of exactly one JSON object
 *                (surrounding whitespace allowed).  It is validated with the
 *                same scanner as responses, so it cannot smuggle in extra
 *                envelope fields.
 *   out          receives the parsed response; free with ub_response_free().
 * Returns 0 when a well-formed response arrived, whether the broker said
 * "ok":true or "ok":false (check (*out)->ok).  A broker error answered with
 * "id":null (a frame it could not parse) counts as the response to this
 * request.  After an E_PROTOCOL answer from the broker the connection is
 * marked unusable, as the broker closes it.
 * Returns -1 with errno set and *out NULL on failure; ub_conn_error() then
 * describes it:
 *   EINVAL, EILSEQ, EMSGSIZE  bad arguments, nothing sent (E_BAD_REQUEST;
 *                             the connection stays usable)
 *   ETIMEDOUT                 no complete response before the deadline
 *                             (E_UNAVAILABLE)
 *   ECONNRESET, EPIPE, ...    the broker closed the connection or a socket
 *                             error occurred (E_UNAVAILABLE)
 *   EPROTO                    oversized or truncated frame, invalid JSON,
 *                             bad envelope, unexpected id (E_PROTOCOL)
 *   ENOTCONN                  the connection is already unusable after an
 *                             earlier failure (ub_conn_error() still
 *                             describes that failure)
 *   ENOMEM                    (E_INTERNAL)
 */
int ub_request(struct ub_conn *conn, const char *op, const char *params_json,
	       struct ub_response **out);

/* ub_response_free: free a response.  NULL is a no-op. */
void ub_response_free(struct ub_response *resp);

/* ub_conn_error: copy into *err the description of the failure of the most
 * recent ub_request() on conn: code "" if it returned 0; unchanged by calls
 * refused with ENOTCONN, so it names what broke the connection.  With conn
 * NULL, *err becomes E_BAD_REQUEST; err NULL is a no-op. */
void ub_conn_error(const struct ub_conn *conn, struct ub_error *err);

/* ub_response_error: fill *err from a response with ok == 0 (code and a
 * sanitised, truncated message); for ok == 1 it clears *err. */
void ub_response_error(const struct ub_response *resp, struct ub_error *err);

/*
 * Convenience calls.  Each returns 0 on success and clears *err (code "").
 * On failure it returns -1 and fills *err (if not NULL); errno is EREMOTEIO
 * when the broker refused (err->code is the broker's code), EPROTO when the
 * broker's answer lacks what the op promises (E_PROTOCOL), else as for
 * ub_request().
 */

/* ub_register: register the mount at mountpoint (an absolute path in the
 * caller's own mount namespace) for the calling process.  fstype and source
 * may be NULL (left out).  Strings must be valid UTF-8 (else E_BAD_REQUEST,
 * errno EILSEQ); they are JSON-escaped here.  On success *id_out receives
 * the registration id (result.id), to be freed with free(3); on failure it
 * is set to NULL. */
int ub_register(struct ub_conn *conn, const char *mountpoint, const char *fstype,
		const char *source, char **id_out, struct ub_error *err);

/* ub_unregister: remove registration id (as returned by ub_register). */
int ub_unregister(struct ub_conn *conn, const char *id, struct ub_error *err);

/* ub_ping: check that the broker answers. */
int ub_ping(struct ub_conn *conn, struct ub_error *err);

/* The JSON scanner (ub_json_validate, ub_json_find, ub_json_get_string,
 * ub_json_decode_string, ub_json_quote) is declared in ub-json.h. */

/*
 * ub_parse_response: parse one response frame body [body, body+len) as
 * ub_request() does, expecting id expect_id.  For callers with their own
 * transport, and for tests.  body is copied; the caller keeps it.  Returns
 * 0, *out (free with ub_response_free()) and *err (if not NULL) cleared; or
 * -1 with *out NULL and errno EPROTO (*err: E_PROTOCOL and the reason),
 * EMSGSIZE (len > UB_MAX_RESPONSE; *err: E_PROTOCOL), EINVAL, or ENOMEM
 * (*err: E_INTERNAL).
 */
int ub_parse_response(const char *body, size_t len, unsigned long long expect_id,
		      struct ub_response **out, struct ub_error *err);

#ifdef __cplusplus
}
#endif

#endif /* UB_CLIENT_H */
