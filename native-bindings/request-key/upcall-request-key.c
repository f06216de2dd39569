/*
 * upcall-request-key: the program /sbin/request-key runs (through a line in
 * /etc/request-key.d/upcall-broker.conf) to construct a key inside the
 * container of the process that requested it.
 *
 *   upcall-request-key [OPTIONS] %o %k %t %d %c %u %g %T %P %S
 *   upcall-request-key --ping [--socket PATH] [--timeout-ms N]
 *
 * It finds the requesting task from the kernel (the pid: field of the
 * .request_key_auth key in /proc/keys), asks the broker over its admin socket
 * (op "request-key"), and then, as the holder of the authority, instantiates,
 * rejects or negates the key, or execs the fallback program when the broker
 * declines.  Every path ends the kernel's request within --timeout-ms (plus a
 * one-second backstop timer): the requester sleeps uninterruptibly until this
 * process exits, so this program must never hang.
 *
 * libc and ub-client only; raw syscall(SYS_keyctl) rather than libkeyutils;
 * single-threaded; no allocation that is not freed before exit matters.
 * docs/request-key.md is the reference for the command line and behaviour.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "ub-client.h"
#include "request-key/upcall-request-key.h"
#include "basic/base64.h"
#include "basic/utf8.h"
#include "basic/file.h"
#include "basic/proc.h"
#include "basic/time.h"

/* ------------------------------------------------------------------------ */
/* Pure helpers (tested by upcall-request-key-selftest.c)                    */
/* ------------------------------------------------------------------------ */

const char urk_usage[] =
	"usage: upcall-request-key [OPTIONS] %o %k %t %d %c %u %g %T %P %S\n"
	"       upcall-request-key --ping [--socket PATH] [--timeout-ms N]\n"
	"\n"
	"Run by /sbin/request-key (see /etc/request-key.d/upcall-broker.conf): asks the\n"
	"upcall-broker how to construct the key, in the requester's container.\n"
	"\n"
	"  -s, --socket PATH        broker admin socket (default " UB_DEFAULT_SOCKET ")\n"
	"  -t, --timeout-ms N       total time budget, 100..60000 (default 3000)\n"
	"  -F, --fail-timeout S     negative-key timeout when the broker cannot answer (default 1)\n"
	"  -f, --fallback PROG      absolute path run as `PROG KEYID` when the broker declines\n"
	"                           (and, for host requesters, when it is unreachable)\n"
	"  -S, --strict             run the fallback only when the broker declines\n"
	"  -l, --log-file PATH      append one line per request (diagnostics, benchmarks)\n"
	"  -v, --verbose            also log successful decisions to syslog and stderr\n"
	"  -p, --ping               connect, ping the broker, exit 0 (reachable) or 1\n"
	"  -h, --help / -V, --version\n";

int urk_parse_int32(const char *s, int32_t *out)
{
	char *end;
	long long v;

	if (!s || !*s || (*s != '-' && (*s < '0' || *s > '9'))) {
		errno = EINVAL;
		return -1;
	}
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end) {
		errno = errno ? errno : EINVAL;
		return -1;
	}
	if (v < INT32_MIN || v > INT32_MAX) {
		errno = ERANGE;
		return -1;
	}
	*out = (int32_t)v;
	return 0;
}

static int parse_range(const char *s, long lo, long hi, long *out)
{
	int32_t v;

	if (urk_parse_int32(s, &v) < 0 || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int urk_parse_args(int argc, char **argv, struct urk_options *o, char *err, size_t errlen)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "fail-timeout", required_argument, NULL, 'F' },
		{ "fallback", required_argument, NULL, 'f' },
		{ "strict", no_argument, NULL, 'S' },
		{ "log-file", required_argument, NULL, 'l' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "ping", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char **pos[10];
	long v;
	int c, npos;

	memset(o, 0, sizeof(*o));
	o->timeout_ms = URK_DEFAULT_TIMEOUT_MS;
	o->fail_timeout = URK_DEFAULT_FAIL_TIMEOUT;
	optind = 0; /* glibc: full re-initialisation, so repeated calls (selftest) start afresh */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+s:t:F:f:Sl:vphV", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (!*optarg) {
				snprintf(err, errlen, "--socket: empty path");
				return -1;
			}
			o->socket = optarg;
			break;
		case 't':
			if (parse_range(optarg, URK_MIN_TIMEOUT_MS, URK_MAX_TIMEOUT_MS, &v) < 0) {
				snprintf(err, errlen, "--timeout-ms: expected %d..%d, got \"%s\"",
					 URK_MIN_TIMEOUT_MS, URK_MAX_TIMEOUT_MS, optarg);
				return -1;
			}
			o->timeout_ms = (int)v;
			break;
		case 'F':
			if (parse_range(optarg, 0, 86400, &v) < 0) {
				snprintf(err, errlen, "--fail-timeout: expected 0..86400 seconds, got \"%s\"", optarg);
				return -1;
			}
			o->fail_timeout = (int)v;
			break;
		case 'f':
			if (optarg[0] != '/') {
				snprintf(err, errlen, "--fallback: \"%s\" is not an absolute path", optarg);
				return -1;
			}
			o->fallback = optarg;
			break;
		case 'S':
			o->strict = 1;
			break;
		case 'l':
			o->log_file = optarg;
			break;
		case 'v':
			o->verbose++;
			break;
		case 'p':
			o->ping = 1;
			break;
		case 'h':
			fputs(urk_usage, stdout);
			return 1;
		case 'V':
			printf("upcall-request-key %s\n", URK_VERSION);
			return 1;
		case ':':
			snprintf(err, errlen, "option %s needs an argument", argv[optind - 1]);
			return -1;
		default:
			snprintf(err, errlen, "unknown option %s", argv[optind - 1]);
			return -1;
		}
	}
	npos = argc - optind;
	if (o->ping) {
		if (npos != 0) {
			snprintf(err, errlen, "--ping takes no positional arguments");
			return -1;
		}
		return 0;
	}
	if (npos != 10) {
		snprintf(err, errlen, "expected the 10 request-key arguments %%o %%k %%t %%d %%c %%u %%g %%T %%P %%S, got %d", npos);
		return -1;
	}
	pos[0] = &o->op; pos[1] = &o->key; pos[2] = &o->type; pos[3] = &o->description;
	pos[4] = &o->callout; pos[5] = &o->uid; pos[6] = &o->gid; pos[7] = &o->thread_ring;
	pos[8] = &o->process_ring; pos[9] = &o->session_ring;
	for (c = 0; c < 10; c++)
		*pos[c] = argv[optind + c];
	return 0;
}

/* Within the line [p, end): "key:<hex> pid:<dec> ci:<dec>" after the type column. */
static int parse_auth_desc(const char *p, const char *end, struct urk_auth_info *out)
{
	unsigned long long target = 0, pid = 0, ci = 0;
	const char *k = NULL;
	int n;

	/* The type column is "%-9.9s " (".request_"), then the description.  Find
	 * " key:" rather than counting columns: the description is what we want. */
	for (const char *q = p; q + 5 <= end; q++) {
		if (memcmp(q, " key:", 5) == 0) {
			k = q + 5;
			break;
		}
	}
	if (!k)
		return -1;
	for (n = 0; k < end && ((*k >= '0' && *k <= '9') || (*k >= 'a' && *k <= 'f')); k++, n++) {
		target = target * 16 + (unsigned)(*k <= '9' ? *k - '0' : *k - 'a' + 10);
		if (target > INT32_MAX)
			return -1;
	}
	if (n == 0 || end - k < 6 || memcmp(k, " pid:", 5) != 0)
		return -1;
	k += 5;
	for (n = 0; k < end && *k >= '0' && *k <= '9'; k++, n++) {
		pid = pid * 10 + (unsigned)(*k - '0');
		if (pid > INT32_MAX)
			return -1;
	}
	if (n == 0 || end - k < 5 || memcmp(k, " ci:", 4) != 0)
		return -1;
	k += 4;
	for (n = 0; k < end && *k >= '0' && *k <= '9'; k++, n++) {
		ci = ci * 10 + (unsigned)(*k - '0');
		if (ci > (1u << 30))
			return -1;
	}
	if (n == 0 || k != end || pid == 0)
		return -1;
	out->target = (int32_t)target;
	out->pid = (pid_t)pid;
	out->callout_len = (size_t)ci;
	return 0;
}

int urk_find_auth(const char *buf, size_t len, int32_t serial, struct urk_auth_info *out)
{
	char want[16];
	const char *p = buf, *end = buf + len;

	snprintf(want, sizeof(want), "%08x ", (unsigned)serial);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;

		if ((size_t)(eol - p) > 9 && memcmp(p, want, 9) == 0) {
			if (parse_auth_desc(p, eol, out) < 0) {
				errno = EBADMSG;
				return -1;
			}
			return 0;
		}
		p = nl ? nl + 1 : end;
	}
	errno = ENOENT;
	return -1;
}

int urk_find_auth_fd(int fd, char *buf, size_t cap, int32_t serial, struct urk_auth_info *out)
{
	size_t len = 0;

	for (;;) {
		ssize_t r;
		size_t whole;

		if (len == cap) {
			errno = EBADMSG; /* one line longer than buf */
			return -1;
		}
		r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0) {
			whole = len; /* EOF: a last line without '\n' too */
		} else {
			char *nl;

			len += (size_t)r;
			nl = memrchr(buf, '\n', len);
			if (!nl)
				continue;
			whole = (size_t)(nl + 1 - buf);
		}
		if (urk_find_auth(buf, whole, serial, out) == 0)
			return 0;
		if (errno != ENOENT || r == 0)
			return -1;
		memmove(buf, buf + whole, len - whole);
		len -= whole;
	}
}

int urk_parse_describe(char *buf, char **type, char **description)
{
	char *p = buf;
	int i;

	*type = buf;
	for (i = 0; i < 4; i++) {
		p = strchr(p, ';');
		if (!p) {
			errno = EBADMSG;
			return -1;
		}
		if (i == 0)
			*p = 0;
		p++;
	}
	*description = p;
	return 0;
}

char *urk_build_params(const struct urk_request *r)
{
	char *op = NULL, *type = NULL, *desc = NULL, *callout = NULL, *out = NULL;
	const char *callout_key;
	int n;

	if (!ub_utf8_valid(r->type, strlen(r->type)) || !ub_utf8_valid(r->description, strlen(r->description)) ||
	    !ub_utf8_valid(r->op, strlen(r->op))) {
		errno = EILSEQ;
		return NULL;
	}
	op = ub_json_quote(r->op);
	type = ub_json_quote(r->type);
	desc = ub_json_quote(r->description);
	if (ub_utf8_valid(r->callout, r->callout_len) && memchr(r->callout, 0, r->callout_len) == NULL) {
		char *tmp = strndup(r->callout, r->callout_len);

		callout_key = "callout";
		callout = tmp ? ub_json_quote(tmp) : NULL;
		free(tmp);
	} else {
		char *enc = ub_base64_encode_alloc((const unsigned char *)r->callout, r->callout_len);

		callout_key = "calloutBase64";
		if (enc) {
			callout = malloc(strlen(enc) + 3);
			if (callout)
				sprintf(callout, "\"%s\"", enc);
		}
		free(enc);
	}
	if (!op || !type || !desc || !callout)
		goto out;
	n = asprintf(&out,
		     "{\"keyId\":%d,\"op\":%s,\"type\":%s,\"description\":%s,\"%s\":%s,"
		     "\"requesterPid\":%d,\"requesterStartTime\":%llu,\"uid\":%lld,\"gid\":%lld,"
		     "\"keyrings\":{\"thread\":%d,\"process\":%d,\"session\":%d},\"timeoutMs\":%d}",
		     (int)r->key, op, type, desc, callout_key, callout,
		     (int)r->requester_pid, r->requester_start_time, r->uid, r->gid,
		     (int)r->thread_ring, (int)r->process_ring, (int)r->session_ring, r->timeout_ms);
	if (n < 0)
		out = NULL;
out:
	free(op);
	free(type);
	free(desc);
	free(callout);
	if (!out && errno != EILSEQ)
		errno = ENOMEM;
	return out;
}

/* An integer member: 1 present, 0 absent or null, -1 malformed. */
static int json_int(const char *json, size_t len, const char *key, long long lo, long long hi, long long *out)
{
	const char *v;
	size_t vlen, i = 0;
	long long n = 0;
	int neg = 0;

	if (ub_json_find(json, len, key, &v, &vlen) < 0)
		return errno == ENOENT ? 0 : -1;
	if (vlen == 4 && memcmp(v, "null", 4) == 0)
		return 0;
	if (vlen > 0 && v[0] == '-') {
		neg = 1;
		i = 1;
	}
	if (i == vlen || vlen - i > 12)
		return -1;
	for (; i < vlen; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		n = n * 10 + (v[i] - '0');
	}
	if (neg)
		n = -n;
	if (n < lo || n > hi)
		return -1;
	*out = n;
	return 1;
}

static void json_copy_string(const char *json, size_t len, const char *key, char *dst, size_t cap)
{
	char *s = NULL;

	dst[0] = 0;
	if (ub_json_get_string(json, len, key, &s) == 0) {
		snprintf(dst, cap, "%s", s);
		for (char *p = dst; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
	}
	free(s);
}

int urk_parse_decision(const char *json, size_t len, struct urk_decision *d, char *why, size_t whylen)
{
	char *action = NULL, *b64s = NULL;
	long long v;
	int r;

	memset(d, 0, sizeof(*d));
	if (ub_json_get_string(json, len, "action", &action) < 0) {
		snprintf(why, whylen, "the broker's answer has no \"action\"");
		goto bad;
	}
	json_copy_string(json, len, "reason", d->reason, sizeof(d->reason));
	json_copy_string(json, len, "context", d->context, sizeof(d->context));
	if (strcmp(action, "instantiate") == 0) {
		d->action = URK_INSTANTIATE;
		if (ub_json_get_string(json, len, "payloadBase64", &b64s) < 0) {
			snprintf(why, whylen, "instantiate without payloadBase64");
			goto bad;
		}
		if (strlen(b64s) > (size_t)URK_MAX_PAYLOAD / 3 * 4 + 4 ||
		    ub_base64_decode_alloc(b64s, strlen(b64s), &d->payload, &d->payload_len) < 0) {
			snprintf(why, whylen, "payloadBase64 is not valid base64 of at most %u bytes", URK_MAX_PAYLOAD);
			goto bad;
		}
		r = json_int(json, len, "expirySeconds", 0, UINT32_MAX, &v);
		if (r < 0) {
			snprintf(why, whylen, "expirySeconds is not a non-negative integer");
			goto bad;
		}
		d->expiry = r ? (long)v : 0;
	} else if (strcmp(action, "reject") == 0 || strcmp(action, "negate") == 0) {
		d->action = action[0] == 'r' ? URK_REJECT : URK_NEGATE;
		r = json_int(json, len, "timeoutSeconds", 0, UINT32_MAX, &v);
		if (r <= 0) {
			snprintf(why, whylen, "%s without a valid timeoutSeconds", action);
			goto bad;
		}
		d->timeout = (long)v;
		if (d->action == URK_REJECT) {
			r = json_int(json, len, "errno", 1, 4095, &v);
			if (r <= 0) {
				snprintf(why, whylen, "reject without a valid errno");
				goto bad;
			}
			d->err = (int)v;
		}
	} else if (strcmp(action, "decline") == 0) {
		d->action = URK_DECLINE;
	} else {
		snprintf(why, whylen, "unknown action \"%.40s\"", action);
		goto bad;
	}
	free(action);
	free(b64s);
	return 0;
bad:
	free(action);
	free(b64s);
	urk_decision_free(d);
	errno = EBADMSG;
	return -1;
}

void urk_decision_free(struct urk_decision *d)
{
	free(d->payload);
	d->payload = NULL;
	d->payload_len = 0;
}

int urk_errno_for_code(const char *code)
{
	if (!strcmp(code, "E_BUSY") || !strcmp(code, "E_UPCALL_TIMEOUT") || !strcmp(code, "E_UNAVAILABLE"))
		return EAGAIN;
	if (!strcmp(code, "E_PERMISSION"))
		return EACCES;
	if (!strcmp(code, "E_NS_NOT_OWNED"))
		return EPERM;
	if (!strcmp(code, "E_INIT_EXITED") || !strcmp(code, "E_NO_PROCESS"))
		return ESRCH;
	return URK_EKEYREJECTED;
}

const char *urk_errno_name(int err)
{
	switch (err) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EINVAL: return "EINVAL";
	case EFBIG: return "EFBIG";
	case ENODATA: return "ENODATA";
	case EMSGSIZE: return "EMSGSIZE";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case ENETUNREACH: return "ENETUNREACH";
	case EDQUOT: return "EDQUOT";
	case URK_ENOKEY: return "ENOKEY";
	case URK_EKEYREJECTED: return "EKEYREJECTED";
	default: return NULL;
	}
}

#ifndef URK_NO_MAIN
/* ------------------------------------------------------------------------ */
/* The program                                                               */
/* ------------------------------------------------------------------------ */

#define KEYCTL_GET_KEYRING_ID 0
#define KEYCTL_DESCRIBE 6
#define KEYCTL_READ 11
#define KEYCTL_INSTANTIATE 12
#define KEYCTL_SET_TIMEOUT 15
#define KEYCTL_ASSUME_AUTHORITY 16
#define KEYCTL_REJECT 19
#define KEY_SPEC_REQKEY_AUTH_KEY (-7)

/* A /proc/keys line is at most ~4.2 KiB (descriptions are capped at 4095
 * bytes); seq_file hands out at most a page per read. */
#define PROC_KEYS_BUF (32u * 1024u)

/* The requester: the auth key's pid: field, only shown by /proc/keys.  Read
 * no further than that line: keys are listed by serial, so on average half
 * the file is read, and each line costs the kernel a keyring search (for
 * possession), which with hundreds of keys in the system (cached DNS answers,
 * say) made reading all of it the handler's largest own cost. */
static int find_auth(int32_t serial, struct urk_auth_info *out)
{
	/* openat, not open: musl's open(O_CLOEXEC) adds an fcntl(F_SETFD) for old kernels */
	static char buf[PROC_KEYS_BUF];
	int fd = openat(AT_FDCWD, "/proc/keys", O_RDONLY | O_CLOEXEC | O_NOCTTY), r, e;

	if (fd < 0)
		return -1;
	r = urk_find_auth_fd(fd, buf, sizeof(buf), serial, out);
	e = errno;
	close(fd);
	errno = e;
	return r;
}

static struct urk_options opts;
static long long t_start_ns;
/* For the backstop timer's signal handler: the key, and when to give up. */
static volatile sig_atomic_t g_key;
static volatile sig_atomic_t g_fail_timeout;

static long keyctl5(int cmd, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)
{
	return syscall(SYS_keyctl, cmd, a2, a3, a4, a5);
}

static long elapsed_us(void)
{
	return (long)((ub_now_ns() - t_start_ns) / 1000);
}

static int remaining_ms(void)
{
	long left = opts.timeout_ms - elapsed_us() / 1000;

	return left > 0 ? (int)left : 0;
}

/* The state of one request, for the log line. */
static struct {
	int32_t key;
	const char *type, *description;
	pid_t requester;
	const char *context;
} req;

static void vlog_line(int prio, const char *fmt, va_list ap)
{
	char msg[768];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = '?';
	fprintf(stderr, "upcall-request-key: %s\n", msg);
	syslog(prio, "%s", msg);
}

static void say(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(int prio, const char *fmt, ...)
{
	va_list ap;

	if (prio >= LOG_INFO && !opts.verbose)
		return;
	va_start(ap, fmt);
	vlog_line(prio, fmt, ap);
	va_end(ap);
}

/* One line per request in --log-file: time, key, what happened, how long. */
static void log_outcome(const char *outcome, const char *detail)
{
	char line[1024], when[40];
	struct timespec now;
	struct tm tm;
	int fd, n;

	if (!opts.log_file)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03ldZ pid=%d key=%d type=%s requester=%d context=%s outcome=%s elapsed_us=%ld detail=%s\n",
		     when, now.tv_nsec / 1000000, (int)getpid(), (int)req.key, req.type ? req.type : "-",
		     (int)req.requester, req.context && *req.context ? req.context : "-", outcome, elapsed_us(),
		     detail && *detail ? detail : "-");
	if (n <= 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	for (int i = 0; i < n - 1; i++)
		if ((unsigned char)line[i] < 0x20)
			line[i] = '?';
	fd = openat(AT_FDCWD, opts.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0) {
		ssize_t w = write(fd, line, (size_t)n); /* one write: lines of concurrent handlers do not interleave */
		(void)w;
		close(fd);
	}
}

static const char *ename(int err)
{
	const char *n = urk_errno_name(err);
	static char buf[16];

	if (n)
		return n;
	snprintf(buf, sizeof(buf), "errno %d", err);
	return buf;
}

/* The backstop: whatever is stuck, reject the key and go, so the requester wakes. */
static void on_alarm(int sig)
{
	static const char msg[] = "upcall-request-key: time budget exhausted; rejecting the key with EAGAIN\n";
	ssize_t w;

	(void)sig;
	syscall(SYS_keyctl, KEYCTL_REJECT, (unsigned long)g_key, (unsigned long)g_fail_timeout, (unsigned long)EAGAIN, 0UL);
	w = write(2, msg, sizeof(msg) - 1);
	(void)w;
	_exit(3);
}

static void arm_backstop(void)
{
	struct itimerval it = { { 0, 0 }, { 0, 0 } };
	struct sigaction sa;
	long ms = opts.timeout_ms + 1000;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	it.it_value.tv_sec = ms / 1000;
	it.it_value.tv_usec = (ms % 1000) * 1000;
	setitimer(ITIMER_REAL, &it, NULL);
}

static void disarm_backstop(void)
{
	struct itimerval it = { { 0, 0 }, { 0, 0 } };

	setitimer(ITIMER_REAL, &it, NULL);
	signal(SIGALRM, SIG_DFL);
}

/* Reject the key ourselves (the broker could not decide) and exit 1. */
static void fail_key(int err, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void fail_key(int err, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (keyctl5(KEYCTL_REJECT, (unsigned long)req.key, (unsigned long)opts.fail_timeout, (unsigned long)err, 0) < 0) {
		int e = errno;

		say(LOG_ERR, "key %d (%s): %s; and KEYCTL_REJECT failed: %s", (int)req.key, req.type ? req.type : "?", why, strerror(e));
	} else {
		say(LOG_WARNING, "key %d (%s \"%.80s\", requester %d): %s; rejected with %s for %d s",
		    (int)req.key, req.type ? req.type : "?", req.description ? req.description : "", (int)req.requester,
		    why, ename(err), opts.fail_timeout);
	}
	log_outcome("failed", why);
	exit(1);
}

/* Whether pid lives in our own user namespace (the host's, for a handler the kernel started). */
static int same_userns(pid_t pid)
{
	char path[64];
	struct stat a, b;

	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
	if (stat(path, &a) < 0 || stat("/proc/self/ns/user", &b) < 0)
		return 0;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static void run_fallback(const char *why) __attribute__((noreturn));
static void run_fallback(const char *why)
{
	char keystr[16];
	const char *base = strrchr(opts.fallback, '/') + 1;
	char *const argv[] = { (char *)base, keystr, NULL };

	snprintf(keystr, sizeof(keystr), "%d", (int)req.key);
	say(LOG_INFO, "key %d (%s): %s; running %s %s", (int)req.key, req.type, why, opts.fallback, keystr);
	log_outcome("fallback", why);
	/* The fallback is the host's own handler: it gets keyutils' behaviour,
	 * unbounded by our budget (as it would be without us). The authority we
	 * assumed travels across execve in our credentials. */
	disarm_backstop();
	fflush(NULL);
	execv(opts.fallback, argv);
	fail_key(URK_ENOKEY, "%s, but the fallback %s cannot be run: %s", why, opts.fallback, strerror(errno));
}

/* The broker cannot be asked: the host's own handler for host requesters, else a short rejection. */
static void broker_unavailable(const char *why) __attribute__((noreturn));
static void broker_unavailable(const char *why)
{
	if (opts.fallback && !opts.strict && same_userns(req.requester)) {
		char msg[600];

		snprintf(msg, sizeof(msg), "%s; the requester is a host process", why);
		run_fallback(msg);
	}
	fail_key(EAGAIN, "%s", why);
}

static int do_ping(void)
{
	struct ub_conn *conn = NULL;
	struct ub_error err;

	if (ub_connect(opts.socket, opts.timeout_ms, &conn) < 0) {
		ub_connect_error(&err, opts.socket, errno);
		fprintf(stderr, "upcall-request-key: %s: %s\n", err.code, err.message);
		return 1;
	}
	if (ub_ping(conn, &err) < 0) {
		fprintf(stderr, "upcall-request-key: %s: %s\n", err.code, err.message);
		ub_close(conn);
		return 1;
	}
	ub_close(conn);
	if (opts.verbose)
		printf("broker answers on %s (%ld us)\n", opts.socket ? opts.socket : UB_DEFAULT_SOCKET, elapsed_us());
	return 0;
}

static void apply(const struct urk_decision *d)
{
	long rc;

	switch (d->action) {
	case URK_INSTANTIATE:
		/* The expiry first: once instantiated, the authority is gone and
		 * KEYCTL_SET_TIMEOUT would need SETATTR on the requester's key. */
		if (d->expiry > 0 && keyctl5(KEYCTL_SET_TIMEOUT, (unsigned long)req.key, (unsigned long)d->expiry, 0, 0) < 0)
			fail_key(errno == EACCES ? URK_EKEYREJECTED : errno, "KEYCTL_SET_TIMEOUT(%ld) failed: %s", d->expiry, strerror(errno));
		rc = keyctl5(KEYCTL_INSTANTIATE, (unsigned long)req.key, (unsigned long)d->payload,
			     (unsigned long)d->payload_len, 0);
		if (rc < 0) {
			int e = errno;

			/* e.g. EINVAL from the type's preparse, EDQUOT: the key stays
			 * under construction, so it can still be rejected. */
			fail_key(e, "KEYCTL_INSTANTIATE of %zu bytes failed: %s", d->payload_len, strerror(e));
		}
		say(LOG_INFO, "key %d (%s \"%.80s\") instantiated for requester %d in %s: %zu bytes, expiry %ld s",
		    (int)req.key, req.type, req.description, (int)req.requester, d->context[0] ? d->context : "?",
		    d->payload_len, d->expiry);
		log_outcome("instantiated", d->reason);
		return;
	case URK_REJECT:
	case URK_NEGATE: {
		int err = d->action == URK_NEGATE ? URK_ENOKEY : d->err;

		if (keyctl5(KEYCTL_REJECT, (unsigned long)req.key, (unsigned long)d->timeout, (unsigned long)err, 0) < 0)
			fail_key(URK_EKEYREJECTED, "KEYCTL_REJECT(%s, %ld s) failed: %s", ename(err), d->timeout, strerror(errno));
		say(LOG_INFO, "key %d (%s \"%.80s\") %s for requester %d: %s for %ld s (%s)",
		    (int)req.key, req.type, req.description, d->action == URK_NEGATE ? "negated" : "rejected",
		    (int)req.requester, ename(err), d->timeout, d->reason);
		log_outcome(d->action == URK_NEGATE ? "negated" : "rejected", d->reason);
		return;
	}
	case URK_DECLINE: {
		char why[300];

		snprintf(why, sizeof(why), "the broker declined (%s)", d->reason[0] ? d->reason : "no reason given");
		if (opts.fallback)
			run_fallback(why);
		fail_key(URK_ENOKEY, "%s and no --fallback is configured", why);
	}
	}
}

int main(int argc, char **argv)
{
	char err[300], why[400], *desc_buf = NULL, *type, *description, *params;
	unsigned char *callout = NULL;
	size_t callout_len = 0;
	struct urk_auth_info auth;
	struct urk_request r;
	struct urk_decision d;
	struct ub_conn *conn = NULL;
	struct ub_response *resp = NULL;
	struct ub_error uerr;
	unsigned long long start_time = 0;
	int32_t key, auth_serial, tmp;
	long n;
	int rc;

	t_start_ns = ub_now_ns();
	rc = urk_parse_args(argc, argv, &opts, err, sizeof(err));
	if (rc > 0)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "upcall-request-key: %s\n%s", err, urk_usage);
		openlog("upcall-request-key", LOG_PID, LOG_DAEMON);
		syslog(LOG_ERR, "bad command line: %s", err);
		return 2;
	}
	openlog("upcall-request-key", LOG_PID, LOG_DAEMON);
	signal(SIGPIPE, SIG_IGN);
	if (opts.ping)
		return do_ping();

	if (urk_parse_int32(opts.key, &key) < 0 || key <= 0) {
		say(LOG_ERR, "bad key id \"%.40s\"", opts.key);
		return 2;
	}
	req.key = key;
	req.type = opts.type;
	req.description = opts.description;
	g_key = key;
	g_fail_timeout = opts.fail_timeout;
	arm_backstop();

	/* request-key has assumed the authority already and it survives execve;
	 * assuming it again makes us work when run by hand from such a program. */
	if (keyctl5(KEYCTL_ASSUME_AUTHORITY, (unsigned long)key, 0, 0, 0) < 0) {
		say(LOG_ERR, "key %d: cannot assume authority: %s (not run by request-key?)", (int)key, strerror(errno));
		log_outcome("no-authority", strerror(errno));
		return 1; /* without the authority we can neither instantiate nor reject: the kernel negates */
	}
	n = keyctl5(KEYCTL_GET_KEYRING_ID, (unsigned long)KEY_SPEC_REQKEY_AUTH_KEY, 0, 0, 0);
	if (n <= 0)
		fail_key(URK_EKEYREJECTED, "cannot find the authorisation key: %s", strerror(errno));
	auth_serial = (int32_t)n;

	/* The requester: the auth key's pid: field, only shown by /proc/keys. */
	if (find_auth(auth_serial, &auth) < 0) {
		if (errno == ENOENT || errno == EBADMSG)
			fail_key(URK_EKEYREJECTED, "authorisation key %d: %s in /proc/keys", (int)auth_serial,
				 errno == ENOENT ? "not listed" : "unexpected line");
		fail_key(URK_EKEYREJECTED, "cannot read /proc/keys: %s", strerror(errno));
	}
	if (auth.target != key)
		fail_key(URK_EKEYREJECTED, "the authorisation key is for key %d, not %d", (int)auth.target, (int)key);
	req.requester = auth.pid;
	{
		/* The requester sleeps uninterruptibly in request_key() until we exit,
		 * so this pid names it for our whole life; the start time lets the
		 * broker check that its own pidfd names the same process. */
		char path[64], stat[2048]; /* 52 fields of at most 20 digits and a 16-byte comm */

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)auth.pid);
		if (ub_read_small_at(AT_FDCWD, path, stat, sizeof(stat)) < 0 ||
		    ub_proc_start_time(stat, &start_time) < 0)
			start_time = 0;
	}

	/* Type and description from the kernel (the arguments are only a fallback). */
	{
		char buf[4096 + 256];

		n = keyctl5(KEYCTL_DESCRIBE, (unsigned long)key, (unsigned long)buf, sizeof(buf), 0);
		if (n > 0 && (size_t)n <= sizeof(buf) && (desc_buf = strdup(buf)) != NULL &&
		    urk_parse_describe(desc_buf, &type, &description) == 0) {
			req.type = type;
			req.description = description;
		}
	}

	/* The callout info, binary-safe, from the auth key (request-key's %c is a C string). */
	callout = malloc(auth.callout_len + 1);
	if (!callout)
		fail_key(ENOMEM, "out of memory");
	n = keyctl5(KEYCTL_READ, (unsigned long)KEY_SPEC_REQKEY_AUTH_KEY, (unsigned long)callout, auth.callout_len + 1, 0);
	if (n >= 0 && (size_t)n <= auth.callout_len) {
		callout_len = (size_t)n;
	} else {
		callout_len = strlen(opts.callout);
		free(callout);
		callout = (unsigned char *)strdup(opts.callout);
		if (!callout)
			fail_key(ENOMEM, "out of memory");
	}

	memset(&r, 0, sizeof(r));
	r.key = key;
	r.op = opts.op;
	r.type = req.type;
	r.description = req.description;
	r.callout = (const char *)callout;
	r.callout_len = callout_len;
	r.requester_pid = auth.pid;
	r.requester_start_time = start_time;
	r.uid = urk_parse_int32(opts.uid, &tmp) == 0 ? (long long)(uint32_t)tmp : -1;
	r.gid = urk_parse_int32(opts.gid, &tmp) == 0 ? (long long)(uint32_t)tmp : -1;
	r.thread_ring = urk_parse_int32(opts.thread_ring, &tmp) == 0 ? tmp : 0;
	r.process_ring = urk_parse_int32(opts.process_ring, &tmp) == 0 ? tmp : 0;
	r.session_ring = urk_parse_int32(opts.session_ring, &tmp) == 0 ? tmp : 0;
	r.timeout_ms = remaining_ms() - URK_MARGIN_MS;
	if (r.timeout_ms < 50)
		r.timeout_ms = 50;
	params = urk_build_params(&r);
	if (!params)
		fail_key(errno == EILSEQ ? EINVAL : ENOMEM, "cannot build the request: %s",
			 errno == EILSEQ ? "type or description is not valid UTF-8" : "out of memory");

	/* Ask the broker, within what is left of the budget. */
	if (remaining_ms() <= 0)
		broker_unavailable("the time budget ran out before the broker could be asked");
	if (ub_connect(opts.socket, remaining_ms(), &conn) < 0) {
		ub_connect_error(&uerr, opts.socket, errno);
		snprintf(why, sizeof(why), "broker unreachable: %s", uerr.message);
		broker_unavailable(why);
	}
	ub_set_timeout(conn, remaining_ms() > 0 ? remaining_ms() : 1);
	if (ub_request(conn, "request-key", params, &resp) < 0) {
		ub_conn_error(conn, &uerr);
		snprintf(why, sizeof(why), "%s: %s", errno == ETIMEDOUT ? "broker did not answer in time" : "broker request failed",
			 uerr.message);
		broker_unavailable(why);
	}
	ub_close(conn);
	free(params);
	if (!resp->ok) {
		ub_response_error(resp, &uerr);
		fail_key(urk_errno_for_code(uerr.code), "broker refused: %s: %s", uerr.code, uerr.message);
	}
	if (urk_parse_decision(resp->result, resp->result_len, &d, err, sizeof(err)) < 0)
		fail_key(URK_EKEYREJECTED, "bad answer from the broker: %s", err);
	ub_response_free(resp);
	req.context = d.context;
	apply(&d);
	urk_decision_free(&d);
	free(callout);
	free(desc_buf);
	return 0;
}
#endif /* URK_NO_MAIN */
