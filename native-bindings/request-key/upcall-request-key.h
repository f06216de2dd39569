/*
 * upcall-request-key.h: the pure parts of the request-key handler
 * (upcall-request-key.c), split out so that native-bindings/
 * upcall-request-key-selftest.c can test them without a kernel key.
 *
 * Nothing here makes a system call but urk_find_auth_fd's read(2); every
 * function is re-entrant.  See
 * docs/request-key.md for the handler's command line and behaviour.
 */
#ifndef UPCALL_REQUEST_KEY_H
#define UPCALL_REQUEST_KEY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define URK_VERSION "0.1.0"

/* Defaults of the command line (docs/request-key.md). */
#define URK_DEFAULT_TIMEOUT_MS 3000
#define URK_MIN_TIMEOUT_MS 100
#define URK_MAX_TIMEOUT_MS 60000
/* Negative-key timeout when the broker cannot answer (seconds). */
#define URK_DEFAULT_FAIL_TIMEOUT 1
/* Time kept back from the broker's deadline for the handler's own work. */
#define URK_MARGIN_MS 300
/* Largest payload accepted from the broker (the kernel caps most types lower). */
#define URK_MAX_PAYLOAD (1024u * 1024u)

/* errno values used as key rejection errors (asm-generic/errno.h). */
#define URK_ENOKEY 126
#define URK_EKEYREJECTED 129

/* What the broker told us to do with the key. */
enum urk_action {
	URK_INSTANTIATE,
	URK_REJECT,
	URK_NEGATE,
	URK_DECLINE,
};

struct urk_decision {
	enum urk_action action;
	unsigned char *payload;   /* malloc'd, URK_INSTANTIATE only; free with urk_decision_free */
	size_t payload_len;
	long expiry;              /* seconds, URK_INSTANTIATE; 0: leave the key's expiry alone */
	long timeout;             /* seconds, URK_REJECT / URK_NEGATE */
	int err;                  /* errno, URK_REJECT */
	char reason[200];         /* for the log; may be "" */
	char context[64];         /* broker context id, for the log; may be "" */
};

/* The parsed command line. */
struct urk_options {
	const char *socket;       /* NULL: UB_DEFAULT_SOCKET */
	int timeout_ms;
	int fail_timeout;         /* seconds */
	const char *fallback;     /* absolute path or NULL */
	int strict;               /* never run the fallback unless the broker says decline */
	const char *log_file;     /* NULL: none */
	int verbose;
	int ping;                 /* --ping: check the broker and exit */
	/* the ten request-key macros, in order: %o %k %t %d %c %u %g %T %P %S */
	const char *op, *key, *type, *description, *callout;
	const char *uid, *gid, *thread_ring, *process_ring, *session_ring;
};

/* What the auth key's line in /proc/keys says. */
struct urk_auth_info {
	int32_t target;           /* key:<hex>: the key under construction */
	pid_t pid;                /* pid:<dec>: the requesting task, as the init pid namespace sees it */
	size_t callout_len;       /* ci:<dec> */
};

/*
 * urk_parse_args: parse argv (getopt_long with "+": options end at the first
 * positional, so a description starting with '-' is never taken for one).
 * Returns 0 (run), 1 (--help or --version printed: exit 0), or -1 with a
 * message in err (usage error: exit 2).  Strings in *o point into argv.
 */
int urk_parse_args(int argc, char **argv, struct urk_options *o, char *err, size_t errlen);

/* The usage text. */
extern const char urk_usage[];

/*
 * urk_parse_int32: a strict decimal integer that fits int32 (request-key
 * passes key ids, uids and keyrings as decimal).  0 or -1 (EINVAL/ERANGE).
 */
int urk_parse_int32(const char *s, int32_t *out);

/*
 * urk_find_auth: in the text of /proc/keys [buf, buf+len), find the line of
 * key `serial` (first column, %08x) and parse what the .request_key_auth type
 * prints after the type column: "key:<hex> pid:<dec> ci:<dec>".  Returns 0,
 * or -1 with errno ENOENT (no such line) or EBADMSG (the line does not have
 * that shape, e.g. not an auth key, or a negative one without pid/ci).
 */
int urk_find_auth(const char *buf, size_t len, int32_t serial, struct urk_auth_info *out);

/*
 * urk_find_auth_fd: urk_find_auth over what fd (/proc/keys) reads, read
 * into buf [cap bytes] and scanned a whole line at a time; lines scanned are
 * dropped, and reading stops at the line of `serial`.  0, or -1 with errno
 * (ENOENT at EOF, EBADMSG as urk_find_auth or for a line longer than cap,
 * read's).  EINTR is retried.
 */
int urk_find_auth_fd(int fd, char *buf, size_t cap, int32_t serial, struct urk_auth_info *out);

/*
 * urk_parse_describe: split KEYCTL_DESCRIBE's "type;uid;gid;perm;description"
 * in place (buf is modified).  The description is everything after the fourth
 * ';' (it may itself contain ';').  0 or -1 (EBADMSG).
 */
int urk_parse_describe(char *buf, char **type, char **description);

/* The request's params, as one JSON object (malloc'd), or NULL with errno
 * (ENOMEM; EILSEQ when type or description is not valid UTF-8).  callout is
 * sent as "callout" when it is valid UTF-8, else as "calloutBase64". */
struct urk_request {
	int32_t key;
	const char *op, *type, *description;
	const char *callout;
	size_t callout_len;
	pid_t requester_pid;
	unsigned long long requester_start_time;  /* 0: unknown */
	long long uid, gid;
	int32_t thread_ring, process_ring, session_ring;
	int timeout_ms;
};
char *urk_build_params(const struct urk_request *r);

/*
 * urk_parse_decision: read the broker's result object [json, json+len).
 * Returns 0 and fills *d (release with urk_decision_free), or -1 with a reason
 * in why (EBADMSG: not a valid decision; ENOMEM).
 */
int urk_parse_decision(const char *json, size_t len, struct urk_decision *d, char *why, size_t whylen);
void urk_decision_free(struct urk_decision *d);

/* Map a broker error code (E_...) to the errno the key is rejected with. */
int urk_errno_for_code(const char *code);

/* Short errno name for logs ("ENODATA"), or NULL when unknown. */
const char *urk_errno_name(int err);

#endif /* UPCALL_REQUEST_KEY_H */
