/*
 * ub-client.c: C client for the upcall-broker socket protocol.  See
 * ub-client.h for the API contract and docs/protocol.md for the protocol.
 *
 * Layout: error helpers, response parsing (in place, one allocation per
 * response, with the JSON scanner of basic/json.c), the transport
 * (non-blocking socket, poll(2) with a deadline), the convenience calls.
 * libc only; no global mutable state.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ub-client.h"
#include "basic/frame.h"
#include "basic/time.h"
#include "basic/utf8.h"

#define MAX_OP_BYTES 64
/* Largest id we send: the protocol allows integers up to 2^53. */
#define MAX_REQUEST_ID (1ull << 53)

struct ub_conn {
	int fd;
	int timeout_ms;
	int broken;                 /* transport/protocol failure: unusable */
	unsigned long long next_id;
	struct ub_error last;       /* failure of the most recent ub_request */
};

/* A response and its frame body live in one allocation.  pub must stay the
 * first member: ub_response_free() casts back. */
struct resp_block {
	struct ub_response pub;
	char code[32];
	size_t len;
	char body[];                /* len + 1 bytes, NUL-terminated */
};

/* ------------------------------------------------------------------------
 * errors
 */

/* Make msg printable on one line: invalid UTF-8 and control characters
 * become '?'.  Works in place. */
static void sanitize(char *msg)
{
	unsigned char *s = (unsigned char *)msg;
	size_t len = strlen(msg), i = 0;

	while (i < len) {
		size_t n = ub_utf8_seq(s + i, len - i);

		if (n == 0 || (n == 1 && (s[i] < 0x20 || s[i] == 0x7f))) {
			s[i++] = '?';
			continue;
		}
		i += n;
	}
}

static void set_error(struct ub_error *err, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_error(struct ub_error *err, const char *code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	snprintf(err->code, sizeof(err->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	sanitize(err->message);
}

static void clear_error(struct ub_error *err)
{
	if (err) {
		err->code[0] = '\0';
		err->message[0] = '\0';
	}
}

/* Copy a UTF-8 string into a fixed buffer, cut on a character boundary. */
static void copy_truncated(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);

	if (n >= cap) {
		n = cap - 1;
		while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
	sanitize(dst);
}

void ub_connect_error(struct ub_error *err, const char *socket_path, int errnum)
{
	const char *path = socket_path ? socket_path : UB_DEFAULT_SOCKET;

	if (errnum == ETIMEDOUT)
		set_error(err, "E_UNAVAILABLE", "timed out connecting to %s", path);
	else
		set_error(err, "E_UNAVAILABLE", "cannot connect to %s: %s", path, strerror(errnum));
}

void ub_conn_error(const struct ub_conn *conn, struct ub_error *err)
{
	if (!err)
		return;
	if (conn)
		*err = conn->last;
	else
		set_error(err, "E_BAD_REQUEST", "no connection");
}

void ub_response_error(const struct ub_response *resp, struct ub_error *err)
{
	if (!err)
		return;
	if (!resp || resp->ok) {
		clear_error(err);
		return;
	}
	copy_truncated(err->code, sizeof(err->code), resp->code);
	copy_truncated(err->message, sizeof(err->message), resp->message);
}

/* ------------------------------------------------------------------------
 * responses
 */

static int span_is(const char *s, size_t start, size_t end, const char *lit)
{
	return ub_json_is((struct ub_json_span){ s + start, end - start }, lit);
}

/* A plain non-negative JSON integer (digits only) up to 2^53, else -1. */
static int parse_id(const char *s, size_t start, size_t end, unsigned long long *id)
{
	return ub_json_uint((struct ub_json_span){ s + start, end - start }, MAX_REQUEST_ID, id);
}

static int valid_code(const char *code)
{
	size_t n = strlen(code);

	if (n == 0 || n >= sizeof(((struct ub_error *)0)->code))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((code[i] >= 'A' && code[i] <= 'Z') || (code[i] >= '0' && code[i] <= '9') ||
		      code[i] == '_'))
			return 0;
	return 1;
}

enum { K_V, K_ID, K_OK, K_RESULT, K_ERROR, K_COUNT };
static const char *const envelope_keys[K_COUNT] = { "v", "id", "ok", "result", "error" };
enum { E_CODE, E_MESSAGE, E_COUNT };
static const char *const error_keys[E_COUNT] = { "code", "message" };

#define PROTO(...) do { set_error(err, "E_PROTOCOL", __VA_ARGS__); return -1; } while (0)

/* Parse b->body[0..b->len) in place and fill b->pub. */
static int parse_block(struct resp_block *b, unsigned long long expect_id, struct ub_error *err)
{
	char *s = b->body;
	size_t sp[2 * K_COUNT];
	unsigned long long id;
	int dup, id_null;

	b->body[b->len] = '\0';
	/* one pass validates the whole frame and finds the envelope members */
	if (ub_json_members(s, b->len, envelope_keys, K_COUNT, sp, &dup) < 0) {
		if (dup >= 0)
			PROTO("response has a duplicate \"%s\" member", envelope_keys[dup]);
		PROTO("response is not a valid JSON object (%zu bytes)", b->len);
	}
	if (sp[2 * K_V + 1] == 0 || !span_is(s, sp[2 * K_V], sp[2 * K_V + 1], "1"))
		PROTO("response \"v\" is missing or not 1");
	if (sp[2 * K_OK + 1] == 0)
		PROTO("response has no \"ok\"");
	if (span_is(s, sp[2 * K_OK], sp[2 * K_OK + 1], "true"))
		b->pub.ok = 1;
	else if (span_is(s, sp[2 * K_OK], sp[2 * K_OK + 1], "false"))
		b->pub.ok = 0;
	else
		PROTO("response \"ok\" is not a boolean");

	if (sp[2 * K_ID + 1] == 0)
		PROTO("response has no \"id\"");
	id_null = span_is(s, sp[2 * K_ID], sp[2 * K_ID + 1], "null");
	if (id_null) {
		/* the broker could not read our id: only an error makes sense */
		if (b->pub.ok)
			PROTO("successful response with a null id");
	} else if (parse_id(s, sp[2 * K_ID], sp[2 * K_ID + 1], &id) < 0 || id != expect_id) {
		PROTO("response id %.*s does not match request id %llu",
		      (int)(sp[2 * K_ID + 1] - sp[2 * K_ID] > 24 ? 24 : sp[2 * K_ID + 1] - sp[2 * K_ID]),
		      s + sp[2 * K_ID], expect_id);
	}

	b->code[0] = '\0';
	b->pub.code = b->code;
	b->pub.message = "";
	b->pub.result = NULL;
	b->pub.result_len = 0;

	if (b->pub.ok) {
		size_t rs = sp[2 * K_RESULT], re = sp[2 * K_RESULT + 1];

		if (re == 0)
			PROTO("successful response has no \"result\"");
		/* the byte after the value is whitespace, ',' or '}': free to clobber */
		s[re] = '\0';
		b->pub.result = s + rs;
		b->pub.result_len = re - rs;
		return 0;
	} else {
		size_t es = sp[2 * K_ERROR], ee = sp[2 * K_ERROR + 1], ep[2 * E_COUNT];
		size_t cs, ce;

		if (ee == 0 || s[es] != '{')
			PROTO("error response has no \"error\" object");
		if (ub_json_members(s + es, ee - es, error_keys, E_COUNT, ep, &dup) < 0)
			PROTO("error response has a malformed \"error\" object");
		cs = es + ep[2 * E_CODE];
		ce = es + ep[2 * E_CODE + 1];
		if (ep[2 * E_CODE + 1] == 0 || s[cs] != '"' || ce - cs > sizeof(b->code) + 1 ||
		    ub_json_decode_token(s + cs, ce - cs, b->code, 0) < 0 ||
		    !valid_code(b->code)) {
			b->code[0] = '\0';
			PROTO("error response has no valid \"error.code\"");
		}
		if (ep[2 * E_MESSAGE + 1] != 0) {
			size_t ms = es + ep[2 * E_MESSAGE], me = es + ep[2 * E_MESSAGE + 1];

			if (s[ms] != '"' ||
			    ub_json_decode_token(s + ms, me - ms, s + ms, UB_JSON_LENIENT) < 0)
				PROTO("error response has a malformed \"error.message\"");
			b->pub.message = s + ms;
		}
		return 0;
	}
}

static struct resp_block *alloc_block(size_t len)
{
	struct resp_block *b;

	if (len > UB_MAX_RESPONSE) {
		errno = EMSGSIZE;
		return NULL;
	}
	b = malloc(offsetof(struct resp_block, body) + len + 1);
	if (!b)
		return NULL;
	memset(b, 0, offsetof(struct resp_block, body));
	b->len = len;
	return b;
}

int ub_parse_response(const char *body, size_t len, unsigned long long expect_id,
		      struct ub_response **out, struct ub_error *err)
{
	struct resp_block *b;

	if (!out || (!body && len)) {
		errno = EINVAL;
		return -1;
	}
	*out = NULL;
	b = alloc_block(len);
	if (!b) {
		if (errno == EMSGSIZE)
			set_error(err, "E_PROTOCOL", "response of %zu bytes is over the limit of %u",
				  len, UB_MAX_RESPONSE);
		else
			set_error(err, "E_INTERNAL", "out of memory");
		return -1;
	}
	if (len)
		memcpy(b->body, body, len);
	if (parse_block(b, expect_id, err) < 0) {
		free(b);
		errno = EPROTO;
		return -1;
	}
	clear_error(err);
	*out = &b->pub;
	return 0;
}

void ub_response_free(struct ub_response *resp)
{
	/* pub is the first member of struct resp_block */
	free(resp);
}

/* ------------------------------------------------------------------------
 * transport
 */

static int norm_timeout(int timeout_ms)
{
	return timeout_ms > 0 ? timeout_ms : UB_DEFAULT_TIMEOUT_MS;
}

/* Wait until fd is ready for events or the deadline passes (ETIMEDOUT).
 * POLLERR/POLLHUP count as ready: the next read/write reports them. */
static int send_all(int fd, const char *buf, size_t len, long long deadline)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = send(fd, buf + done, len - done, MSG_NOSIGNAL);

		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (ub_wait_fd(fd, POLLOUT, deadline) < 0)
				return -1;
			continue;
		}
		if (n == 0)
			errno = EIO;
		return -1;
	}
	return 0;
}

/* Read exactly len bytes.  Returns len, fewer at EOF, or -1 with errno. */
static ssize_t recv_exact(int fd, char *buf, size_t len, long long deadline)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = recv(fd, buf + done, len - done, 0);

		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if (ub_wait_fd(fd, POLLIN, deadline) < 0)
				return -1;
			continue;
		}
		return -1;
	}
	return (ssize_t)done;
}

static struct ub_conn *new_conn(int fd, int timeout_ms)
{
	struct ub_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = fd;
	c->timeout_ms = norm_timeout(timeout_ms);
	c->next_id = 1;
	return c;
}

/* Close fd keeping errno; -1. */
static int close_failing(int fd)
{
	int e = errno;

	close(fd);
	errno = e;
	return -1;
}

/* A connection over the connected, non-blocking fd (closed on failure). */
static int adopt(int fd, int timeout_ms, struct ub_conn **out)
{
	*out = new_conn(fd, timeout_ms);
	return *out ? 0 : close_failing(fd);
}

int ub_connect(const char *socket_path, int timeout_ms, struct ub_conn **out)
{
	const char *path = socket_path ? socket_path : UB_DEFAULT_SOCKET;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t plen = strlen(path);
	long long deadline;
	int fd, e;

	if (!out) {
		errno = EINVAL;
		return -1;
	}
	*out = NULL;
	if (plen == 0) {
		errno = EINVAL;
		return -1;
	}
	if (plen >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sa.sun_path, path, plen + 1);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	deadline = ub_now_ms() + norm_timeout(timeout_ms);
	for (;;) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EISCONN)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			/* AF_UNIX: the listener's backlog is full; retry until the deadline */
			long long left = deadline - ub_now_ms();

			if (left <= 0) {
				errno = ETIMEDOUT;
				goto fail;
			}
			poll(NULL, 0, left < 10 ? (int)left : 10);
			continue;
		}
		if (errno == EINPROGRESS) {
			socklen_t elen = sizeof(e);

			if (ub_wait_fd(fd, POLLOUT, deadline) < 0)
				goto fail;
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
				goto fail;
			if (e != 0) {
				errno = e;
				goto fail;
			}
			break;
		}
		goto fail;
	}
	return adopt(fd, timeout_ms, out);
fail:
	return close_failing(fd);
}

int ub_connect_fd(int fd, int timeout_ms, struct ub_conn **out)
{
	int fl;

	if (fd < 0) {
		errno = EBADF;
		return -1;
	}
	if (!out) {
		errno = EINVAL;
		goto fail;
	}
	*out = NULL;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		goto fail;
	fl = fcntl(fd, F_GETFD);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		goto fail;
	return adopt(fd, timeout_ms, out);
fail:
	return close_failing(fd);
}

void ub_set_timeout(struct ub_conn *conn, int timeout_ms)
{
	if (conn)
		conn->timeout_ms = norm_timeout(timeout_ms);
}

void ub_close(struct ub_conn *conn)
{
	int e = errno;

	if (!conn)
		return;
	close(conn->fd);
	free(conn);
	errno = e;
}

/* Record a failure on conn; errnum becomes errno.  Transport and protocol
 * failures (broken = 1) make the connection unusable. */
static int fail(struct ub_conn *conn, int broken, int errnum, const char *code,
		const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int fail(struct ub_conn *conn, int broken, int errnum, const char *code,
		const char *fmt, ...)
{
	va_list ap;

	snprintf(conn->last.code, sizeof(conn->last.code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(conn->last.message, sizeof(conn->last.message), fmt, ap);
	va_end(ap);
	sanitize(conn->last.message);
	if (broken)
		conn->broken = 1;
	errno = errnum;
	return -1;
}

/* Failure of a send/receive system call (errno set). */
static int fail_io(struct ub_conn *conn, const char *op, const char *what)
{
	int e = errno;

	if (e == ETIMEDOUT)
		return fail(conn, 1, e, "E_UNAVAILABLE", "timed out after %d ms %s (op %s)",
			    conn->timeout_ms, what, op);
	if (e == ENOMEM)
		return fail(conn, 1, e, "E_INTERNAL", "out of memory");
	return fail(conn, 1, e, "E_UNAVAILABLE", "%s (op %s): %s", what, op, strerror(e));
}

/* params_json must be one JSON object; returns its span without whitespace. */
static int params_span(const char *p, size_t *start, size_t *end)
{
	size_t len = strlen(p);

	if (ub_json_value_span(p, len, start, end) < 0 || p[*start] != '{')
		return -1;
	return 0;
}

int ub_request(struct ub_conn *conn, const char *op, const char *params_json,
	       struct ub_response **out)
{
	size_t ps = 0, pe = 0, oplen, body_len, hdr_len;
	struct resp_block *b = NULL;
	unsigned char hdr[4];
	char *qop, *frame, prefix[64];
	unsigned long long id;
	uint32_t rlen;
	long long deadline;
	ssize_t got;
	int n;

	if (!conn || !out) {
		errno = EINVAL;
		return -1;
	}
	*out = NULL;
	if (conn->broken) {
		errno = ENOTCONN;
		return -1;
	}
	if (!op)
		return fail(conn, 0, EINVAL, "E_BAD_REQUEST", "op is NULL");
	oplen = strlen(op);
	if (oplen == 0 || oplen > MAX_OP_BYTES)
		return fail(conn, 0, EINVAL, "E_BAD_REQUEST", "op must be 1..%d bytes", MAX_OP_BYTES);
	if (params_json && params_span(params_json, &ps, &pe) < 0)
		return fail(conn, 0, EINVAL, "E_BAD_REQUEST", "params for op %s are not one JSON object", op);
	qop = ub_json_quote(op);
	if (!qop) {
		if (errno == EILSEQ)
			return fail(conn, 0, EILSEQ, "E_BAD_REQUEST", "op is not valid UTF-8");
		return fail(conn, 0, errno, "E_INTERNAL", "out of memory");
	}
	if (conn->next_id > MAX_REQUEST_ID) {
		free(qop);
		return fail(conn, 1, EOVERFLOW, "E_INTERNAL", "request ids exhausted on this connection");
	}
	id = conn->next_id;

	/* {"v":1,"id":N,"op":"...","params":{...}} */
	n = snprintf(prefix, sizeof(prefix), "{\"v\":1,\"id\":%llu,\"op\":", id);
	hdr_len = (size_t)n;
	body_len = hdr_len + strlen(qop) + (params_json ? strlen(",\"params\":") + (pe - ps) : 0) + 1;
	if (body_len > UB_MAX_REQUEST) {
		free(qop);
		return fail(conn, 0, EMSGSIZE, "E_BAD_REQUEST",
			    "request of %zu bytes is over the broker's limit of %u (op %s)",
			    body_len, UB_MAX_REQUEST, op);
	}
	frame = malloc(4 + body_len);
	if (!frame) {
		free(qop);
		return fail(conn, 0, ENOMEM, "E_INTERNAL", "out of memory");
	}
	conn->next_id++; /* consumed only by a request that is sent */
	ub_frame_put_len((unsigned char *)frame, (uint32_t)body_len);
	{
		char *w = frame + 4;

		memcpy(w, prefix, hdr_len);
		w += hdr_len;
		memcpy(w, qop, strlen(qop));
		w += strlen(qop);
		if (params_json) {
			memcpy(w, ",\"params\":", strlen(",\"params\":"));
			w += strlen(",\"params\":");
			memcpy(w, params_json + ps, pe - ps);
			w += pe - ps;
		}
		*w = '}';
	}
	free(qop);

	deadline = ub_now_ms() + conn->timeout_ms;
	if (send_all(conn->fd, frame, 4 + body_len, deadline) < 0) {
		int e = errno;

		free(frame);
		errno = e;
		return fail_io(conn, op, "sending the request");
	}
	free(frame);

	got = recv_exact(conn->fd, (char *)hdr, sizeof(hdr), deadline);
	if (got < 0)
		return fail_io(conn, op, "waiting for the response");
	if (got == 0)
		return fail(conn, 1, ECONNRESET, "E_UNAVAILABLE",
			    "the broker closed the connection (op %s)", op);
	if (got < (ssize_t)sizeof(hdr))
		return fail(conn, 1, EPROTO, "E_PROTOCOL",
			    "connection closed inside a frame header (op %s)", op);
	rlen = ub_frame_len(hdr);
	if (rlen > UB_MAX_RESPONSE)
		return fail(conn, 1, EPROTO, "E_PROTOCOL",
			    "response frame of %u bytes is over the limit of %u (op %s)",
			    rlen, UB_MAX_RESPONSE, op);
	b = alloc_block(rlen);
	if (!b)
		return fail(conn, 1, ENOMEM, "E_INTERNAL", "out of memory");
	got = recv_exact(conn->fd, b->body, rlen, deadline);
	if (got < 0) {
		int e = errno;

		free(b);
		errno = e;
		return fail_io(conn, op, "reading the response");
	}
	if ((size_t)got < rlen) {
		free(b);
		return fail(conn, 1, EPROTO, "E_PROTOCOL",
			    "connection closed inside a frame (%zd of %u bytes, op %s)", got, rlen, op);
	}
	if (parse_block(b, id, &conn->last) < 0) {
		free(b);
		conn->broken = 1;
		errno = EPROTO;
		return -1;
	}
	clear_error(&conn->last);
	if (!b->pub.ok && strcmp(b->pub.code, "E_PROTOCOL") == 0) {
		/* the broker closes the connection after a framing error */
		conn->broken = 1;
		ub_response_error(&b->pub, &conn->last);
	}
	*out = &b->pub;
	return 0;
}

/* ------------------------------------------------------------------------
 * convenience calls
 */

/* Run op; on success *out holds an ok response and err is cleared. */
static int call(struct ub_conn *conn, const char *op, const char *params,
		struct ub_response **out, struct ub_error *err)
{
	struct ub_response *r;
	int e;

	*out = NULL;
	if (!conn) {
		set_error(err, "E_BAD_REQUEST", "no connection");
		errno = EINVAL;
		return -1;
	}
	if (ub_request(conn, op, params, &r) < 0) {
		e = errno;
		ub_conn_error(conn, err);
		if (e == ENOTCONN && err) {
			char was[sizeof(err->message)];

			memcpy(was, err->message, sizeof(was));
			snprintf(err->message, sizeof(err->message),
				 "connection unusable after an earlier error: %.200s", was);
			sanitize(err->message);
		}
		if (err && err->code[0] == '\0')
			set_error(err, "E_UNAVAILABLE", "%s", strerror(e));
		errno = e;
		return -1;
	}
	if (!r->ok) {
		ub_response_error(r, err);
		ub_response_free(r);
		errno = EREMOTEIO;
		return -1;
	}
	clear_error(err);
	*out = r;
	return 0;
}

/* Quote an optional argument; reports E_BAD_REQUEST / E_INTERNAL. */
static int quote_arg(const char *name, const char *val, char **out, struct ub_error *err)
{
	*out = NULL;
	if (!val)
		return 0;
	*out = ub_json_quote(val);
	if (*out)
		return 0;
	if (errno == EILSEQ)
		set_error(err, "E_BAD_REQUEST", "%s is not valid UTF-8", name);
	else
		set_error(err, "E_INTERNAL", "out of memory");
	return -1;
}

int ub_register(struct ub_conn *conn, const char *mountpoint, const char *fstype,
		const char *source, char **id_out, struct ub_error *err)
{
	char *qm = NULL, *qf = NULL, *qs = NULL, *params = NULL;
	struct ub_response *r = NULL;
	int ret = -1, e = 0;
	size_t len;

	if (id_out)
		*id_out = NULL;
	if (!mountpoint || !id_out) {
		set_error(err, "E_BAD_REQUEST", "mountpoint and id_out are required");
		errno = EINVAL;
		return -1;
	}
	if (quote_arg("mountpoint", mountpoint, &qm, err) < 0 ||
	    quote_arg("fstype", fstype, &qf, err) < 0 ||
	    quote_arg("source", source, &qs, err) < 0) {
		e = errno;
		goto out;
	}
	len = strlen(qm) + (qf ? strlen(qf) : 0) + (qs ? strlen(qs) : 0) + 64;
	params = malloc(len);
	if (!params) {
		e = errno;
		set_error(err, "E_INTERNAL", "out of memory");
		goto out;
	}
	snprintf(params, len, "{\"mountpoint\":%s%s%s%s%s}", qm,
		 qf ? ",\"fstype\":" : "", qf ? qf : "",
		 qs ? ",\"source\":" : "", qs ? qs : "");
	if (call(conn, "register", params, &r, err) < 0) {
		e = errno;
		goto out;
	}
	if (ub_json_get_string(r->result, r->result_len, "id", id_out) < 0 || (*id_out)[0] == '\0') {
		free(*id_out);
		*id_out = NULL;
		set_error(err, "E_PROTOCOL", "register result has no string \"id\"");
		e = EPROTO;
		goto out;
	}
	ret = 0;
out:
	ub_response_free(r);
	free(qm);
	free(qf);
	free(qs);
	free(params);
	if (ret < 0)
		errno = e;
	return ret;
}

int ub_unregister(struct ub_conn *conn, const char *id, struct ub_error *err)
{
	struct ub_response *r;
	char *qid, *params;
	size_t len;
	int e;

	if (!id) {
		set_error(err, "E_BAD_REQUEST", "id is required");
		errno = EINVAL;
		return -1;
	}
	if (quote_arg("id", id, &qid, err) < 0)
		return -1;
	len = strlen(qid) + 16;
	params = malloc(len);
	if (!params) {
		free(qid);
		set_error(err, "E_INTERNAL", "out of memory");
		errno = ENOMEM;
		return -1;
	}
	snprintf(params, len, "{\"id\":%s}", qid);
	free(qid);
	if (call(conn, "unregister", params, &r, err) < 0) {
		e = errno;
		free(params);
		errno = e;
		return -1;
	}
	free(params);
	ub_response_free(r);
	return 0;
}

int ub_ping(struct ub_conn *conn, struct ub_error *err)
{
	struct ub_response *r;

	if (call(conn, "ping", NULL, &r, err) < 0)
		return -1;
	ub_response_free(r);
	return 0;
}
