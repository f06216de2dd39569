/*
 * request.c: one request's life in the zygote: a slot, its attempts (through
 * a template, else cold), the messages of its children, its output, its
 * deadline and its one final event.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/keyctl.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "basic/base64.h"
#include "basic/buf.h"
#include "basic/fd.h"
#include "basic/file.h"
#include "basic/frame.h"
#include "basic/proc.h"
#include "basic/time.h"
#include "context/context.h"
#include "netrelay.h"
#include "ub-client.h"
#include "ub-kernel.h"
#include "ub-wire.h"
#include "zygote/zygote.h"

void reset_req(struct req *r)
{
	memset(r, 0, sizeof(*r));
	r->sock = r->in_fd = r->out.fd = r->err.fd = r->cpidfd = r->apidfd = r->bpidfd = -1;
}

/* Everything of one attempt at spawning (the fds, what the children said),
 * not the request itself: for a retry on the cold path. */
/* The pipes, the socket, C's and B's pidfds and the output so far. */
static void release_io(struct req *r)
{
	ub_close_fd(&r->sock); /* a C still waiting for 'G' reads EOF and exits */
	ub_close_fd(&r->in_fd);
	ub_close_fd(&r->out.fd);
	ub_close_fd(&r->err.fd);
	ub_close_fd(&r->cpidfd);
	ub_close_fd(&r->bpidfd);
	ub_buf_free(&r->out.data);
	ub_buf_free(&r->err.data);
}

static void drop_attempt(struct req *r)
{
	release_io(r);
	ub_free_zeroed(r->fields);
	ub_free_zeroed(r->error);
	r->fields = r->error = NULL;
	r->out.truncated = r->err.truncated = 0;
	r->cpid = 0;
	r->b_exited = r->c_exited = r->have_status = 0;
	r->c_ppid = 0;
	r->c_start = 0;
	r->cpid_at_ns = 0;
	r->in_off = 0;
	r->tmpl = NULL;
	r->route = ROUTE_COLD;
}

static void free_req(struct req *r)
{
	drop_attempt(r);
	ub_close_fd(&r->apidfd);
	ub_close_fd(&r->a.target.pidfd);
	ub_close_fd(&r->a.stdio_fd);
	free_args(&r->a);
	reset_req(r);
}

/* After the event: release everything but A's pidfd, which waits to be reaped
 * (the socket too: once the program has gone, the broker reads EOF on it). */
static void finish(struct req *r)
{
	r->phase = REQ_DONE;
	release_io(r);
	ub_close_fd(&r->a.stdio_fd);
	if (r->a_reaped)
		free_req(r);
}

int nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* One attempt: through a live template, else cold (a new A, which becomes
 * the template when none is live or starting for this init). */
static int start_request(struct req *r, long long now, int allow_template)
{
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, sv[2] = { -1, -1 }, ctl[2] = { -1, -1 }, e;
	struct tmpl *t = NULL;
	pid_t pid;

	/* a socket request: the broker's socket is C's stdin and stdout, our
	 * ends of them stay -1 (nothing to write, nothing to read) */
	if (r->a.stdio_fd >= 0) {
		if ((in[0] = fcntl(r->a.stdio_fd, F_DUPFD_CLOEXEC, 3)) < 0 || (out[1] = fcntl(r->a.stdio_fd, F_DUPFD_CLOEXEC, 3)) < 0)
			goto fail;
	} else if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
		goto fail;
	}
	if (pipe2(err, O_CLOEXEC) < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		goto fail;
	/* a retry (retry_cold) is never queued to a template: it may give up too */
	if (opt_templates && allow_template && !r->retried && (t = find_template(&r->a, now)) != NULL) {
		int fds[4] = { in[0], out[1], err[1], sv[1] };

		if (send_to_template(t, r, fds) == 0) {
			t->last_used = now;
			t->uses++;
			r->tmpl = t;
			r->route = ROUTE_TEMPLATE;
			r->tmpl_created = t->created;
			r->a_reaped = 1; /* no A of its own */
			goto sent;
		}
		t = NULL;
	}
	/* never for a host request: its A serves it and exits (a template would
	 * live in the host's pid namespace), so requests queued to it meanwhile
	 * would be dropped with its control socket */
	if (opt_templates && allow_template && !r->a.target.host && !pending_template(&r->a) && qmsg_size(&r->a) >= 0 &&
	    (t = new_template(now)) != NULL) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0)
			t = NULL;
	}
#ifdef UB_ZYGOTE_PROFILE
	prof_slot = (int)(r - reqs);
#endif
	if (t)
		own_rlimits(t->rlim); /* before the fork: what A's degraded limits are based on */
	pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0)
		run_a(&r->a, in[0], out[1], err[1], sv[1], ctl[1]);
	PROF(r - reqs, PF_FORKED);
	if (t) {
		/* this request is served by A (and then by the template A starts) as a cold one */
		t->used = t->live = 1;
		t->ctl = ctl[0];
		ctl[0] = -1;
		ub_close_fd(&ctl[1]);
		nonblock(t->ctl);
		t->init_pid = r->a.target.pid;
		t->start_time = r->a.target.start_time;
		t->pidns_ino = r->a.target.pidns_ino;
		t->host = r->a.target.host;
		r->route = ROUTE_NEW_TEMPLATE;
	}
	r->apid = pid;
	r->apidfd = (int)syscall(UB_NR_pidfd_open, pid, 0); /* our unreaped child: cannot be reused */
sent:
	close(in[0]);
	close(out[1]);
	close(err[1]);
	close(sv[1]);
	r->in_fd = in[1];
	r->out.fd = out[0];
	r->err.fd = err[0];
	r->sock = sv[0];
	if (r->in_off >= r->a.input_len && (!r->a.stream || r->in_eof))
		ub_close_fd(&r->in_fd); /* nothing to write: C reads EOF */
	else
		nonblock(r->in_fd);
	if (r->out.fd >= 0)
		nonblock(r->out.fd);
	nonblock(r->err.fd);
	nonblock(r->sock);
	return 0;
fail:
	e = errno;
	for (int i = 0; i < 2; i++) {
		ub_close_fd(&in[i]);
		ub_close_fd(&out[i]);
		ub_close_fd(&err[i]);
		ub_close_fd(&sv[i]);
		ub_close_fd(&ctl[i]);
	}
	if (t && !t->used)
		memset(t, 0, sizeof(*t)), t->pidfd = t->ctl = -1;
	errno = e;
	return -1;
}

/* A template attempt that came to nothing before C existed (stale context,
 * template gone, or an A that never became the template it was to be):
 * once more, on the cold path, which reports precisely (its A may become
 * the next template; the request is never queued to one again). */
static int retry_cold(struct req *r, long long now)
{
	if (r->phase != REQ_STARTING || r->route != ROUTE_TEMPLATE || r->retried || r->timed_out ||
	    r->cpidfd >= 0)
		return 0;
	if (r->tmpl && r->tmpl->live)
		retire(r->tmpl, 0);
	r->retried = 1;
	drop_attempt(r);
	r->a_reaped = 0;
	if (start_request(r, now, 1) < 0) {
		emit_native_error(r, "E_FORK", "start spawner", errno);
		finish(r);
	}
	return 1;
}

static struct req *free_slot(void)
{
	size_t i;

	for (i = 0; i < UB_ZYGOTE_MAX_INFLIGHT; i++)
		if (reqs[i].phase == REQ_FREE) {
			if (i >= reqs_hi)
				reqs_hi = i + 1;
			return &reqs[i];
		}
	return NULL;
}

static struct req *find_req(unsigned long long id)
{
	size_t i;

	for (i = 0; i < reqs_hi; i++)
		if ((reqs[i].phase == REQ_STARTING || reqs[i].phase == REQ_RUNNING) && reqs[i].id == id)
			return &reqs[i];
	return NULL;
}

/* A binary stdin frame: more input for a stream request (queued until its
 * pipe takes it).  An unknown id (the request has ended) is ignored. */
static void handle_stdin_data(unsigned long long id, const char *data, size_t n)
{
	struct req *r = find_req(id);
	unsigned char *p;

	if (!r || r->in_fd < 0 || r->in_eof || n == 0)
		return;
	if (r->phase == REQ_RUNNING && r->in_off == r->a.input_len) {
		/* all written (and a retry is no longer possible): start over */
		if (r->a.input)
			explicit_bzero(r->a.input, r->a.input_len);
		r->in_off = r->a.input_len = 0;
	}
	p = malloc(r->a.input_len + n); /* moved by hand, as buf_append */
	if (!p)
		return;
	if (r->a.input_len)
		memcpy(p, r->a.input, r->a.input_len);
	ub_free_zeroed(r->a.input);
	r->a.input = p;
	memcpy(p + r->a.input_len, data, n);
	r->a.input_len += n;
}

/* UB_ZYGOTE_FRAME_EOF: a stream request's stdin ends once what is queued is
 * written; UB_ZYGOTE_FRAME_KILL: kill it now.  An unknown id
 * (the request has ended) is ignored. */
static void handle_control(unsigned long long id, int kill_op)
{
	struct req *r = find_req(id);

	if (!r)
		return;
	if (kill_op) {
		r->killed = 1;
		r->deadline = ub_now_ms();
		ub_close_fd(&r->in_fd);
		return;
	}
	r->in_eof = 1;
	if (r->in_fd >= 0 && r->in_off >= r->a.input_len)
		ub_close_fd(&r->in_fd);
}

/*
 * Init's pidfd for a request: the broker's fd a->broker_fd, taken now (the
 * broker keeps that fd open until the request's final event, so the number
 * cannot name another file yet).  The pidfd, not a number, is init from here
 * on; it must name a live process whose pid is initPid (the template key).
 * 0, or -1 with the error already emitted.
 */
static int take_init_pidfd(unsigned long long id, struct spawn_args *a)
{
	char message[200];
	pid_t pid;
	int fd = (int)syscall(UB_NR_pidfd_getfd, broker_pidfd, a->broker_fd, 0), e;

	if (fd < 0) {
		e = errno;
		snprintf(message, sizeof(message), "pidfd_getfd(broker, %d): %s", a->broker_fd, strerror(e));
		emit_error_raw(1, id, "E_BAD_REQUEST", "E_BAD_REQUEST", "initPidfd", e, message);
		return -1;
	}
	a->target.pidfd = fd;
	pid = ub_pidfd_pid(fd);
	if (pid < 0 && errno == ESRCH) {
		emit_error_raw(1, id, "E_INIT_EXITED", "E_INIT_EXITED", "initPidfd", ESRCH, "init exited (its pidfd names no process)");
		return -1;
	}
	if (pid < 0) {
		e = errno;
		snprintf(message, sizeof(message), "broker fd %d is not a pidfd: %s", a->broker_fd, strerror(e));
		emit_error_raw(1, id, "E_BAD_REQUEST", "E_BAD_REQUEST", "initPidfd", e, message);
		return -1;
	}
	if (pid != a->target.pid) {
		snprintf(message, sizeof(message), "initPidfd names pid %d, not initPid %d", (int)pid, (int)a->target.pid);
		emit_error_raw(1, id, "E_BAD_REQUEST", "E_BAD_REQUEST", "initPidfd", EINVAL, message);
		return -1;
	}
	if (ub_ctx_target_exited(fd)) {
		emit_error_raw(1, id, "E_INIT_EXITED", "E_INIT_EXITED", "initPidfd", ESRCH, "init exited (its pidfd polls readable)");
		return -1;
	}
	return 0;
}

/*
 * A socket request's stdin and stdout: the broker's fd a->stdio_broker_fd,
 * taken now as init's pidfd is (the broker keeps it open until "started" or
 * the final event).  It must be a socket: the broker's own, never one of the
 * container's.  0, or -1 with the error already emitted.
 */
static int take_stdio_socket(unsigned long long id, struct spawn_args *a)
{
	char message[200];
	struct stat st;
	int e;

	if (a->stdio_broker_fd < 0)
		return 0;
	a->stdio_fd = (int)syscall(UB_NR_pidfd_getfd, broker_pidfd, a->stdio_broker_fd, 0);
	if (a->stdio_fd < 0 || fstat(a->stdio_fd, &st) < 0)
		e = errno;
	else if (!S_ISSOCK(st.st_mode))
		e = ENOTSOCK;
	else
		return 0;
	snprintf(message, sizeof(message), "stdioFd: broker fd %d: %s", a->stdio_broker_fd, strerror(e));
	emit_error_raw(1, id, "E_BAD_REQUEST", "E_BAD_REQUEST", "stdioFd", e, message);
	return -1;
}

static void free_spawn_args(struct spawn_args *a)
{
	ub_close_fd(&a->target.pidfd);
	ub_close_fd(&a->stdio_fd);
	free_args(a);
}

void handle_frame(const char *body, size_t len)
{
	unsigned long long id = 0;
	const char *why = "";
	struct req *r;
	size_t vlen;
	int started_event = 1;
	struct spawn_args a = { .target.pidfd = -1 };
	const char *data;

	if (len > 0 && (unsigned char)body[0] == UB_ZYGOTE_FRAME_STDIN) {
		if (parse_data_frame(body, len, UB_ZYGOTE_FRAME_STDIN, &id, &data, &vlen) < 0)
			emit_error_raw(0, 0, "E_BAD_REQUEST", "E_BAD_REQUEST", "parse request", EINVAL, "stdin frame shorter than its header");
		else
			handle_stdin_data(id, data, vlen);
		return;
	}
	if (len > 0 && ((unsigned char)body[0] == UB_ZYGOTE_FRAME_EOF || (unsigned char)body[0] == UB_ZYGOTE_FRAME_KILL)) {
		int kind;

		if (parse_control_frame(body, len, &kind, &id) < 0)
			emit_error_raw(0, 0, "E_BAD_REQUEST", "E_BAD_REQUEST", "parse request", EINVAL, "a control frame is its 9-byte header alone");
		else
			handle_control(id, kind == UB_ZYGOTE_FRAME_KILL);
		return;
	}
	if (len < UB_ZYGOTE_DATA_HEADER || (unsigned char)body[0] != UB_ZYGOTE_FRAME_SPAWN) {
		emit_error_raw(0, 0, "E_BAD_REQUEST", "E_BAD_REQUEST", "parse request", EINVAL,
			       "a request is a binary record: spawn, stdin, eof or kill");
		return;
	}
	id = ub_be64_get((const unsigned char *)body + 1);
	if (id > 1ULL << 53) {
		emit_error_raw(0, 0, "E_BAD_REQUEST", "E_BAD_REQUEST", "parse request", EINVAL, "id must be an integer in 0..2^53");
		return;
	}
	if (parse_spawn_record(body, len, &started_event, &a, &why) < 0) {
		free_args(&a);
		emit_error_raw(1, id, "E_BAD_REQUEST", "E_BAD_REQUEST", "parse request", EINVAL, why);
		return;
	}
	if (take_init_pidfd(id, &a) < 0 || take_stdio_socket(id, &a) < 0) {
		free_spawn_args(&a);
		return;
	}
	r = free_slot();
	if (!r) {
		free_spawn_args(&a);
		emit_error_raw(1, id, "E_BUSY", "E_BUSY", "accept request", EAGAIN, "too many upcalls in flight (512)");
		return;
	}
	r->phase = REQ_STARTING;
	r->id = id;
	r->a = a;
	r->started_event = started_event;
	PROF(r - reqs, PF_PARSED);
	r->deadline = ub_now_ms() + r->a.timeout_ms;
	if (start_request(r, ub_now_ms(), 1) < 0) {
		int e = errno;
		emit_native_error(r, "E_FORK", "start spawner", e);
		free_req(r);
	}
}

/* The fields of this request: the context's (from A, or from the template),
 * with the request's own cwd and builtin, and where the context came from. */
static char *request_fields(struct req *r)
{
	const char *base = r->fields ? r->fields : r->tmpl && r->tmpl->fields ? r->tmpl->fields : NULL;
	struct ub_json_span whole, k, val;
	struct ub_json_iter it;
	struct ub_buf out = { 0 };
	char tmp[400], esc[300];
	int first = 1;

	if (!base)
		return NULL;
	whole.p = base;
	whole.len = strlen(base);
	ub_json_iter_begin(&it, whole);
	ub_buf_append(&out, "{", 1);
	while (ub_json_iter_next(&it, &k, &val) > 0) {
		if (!first)
			ub_buf_append(&out, ",", 1);
		first = 0;
		ub_buf_append(&out, k.p, k.len);
		ub_buf_append(&out, ":", 1);
		if (ub_json_is(k, "\"cwd\"") && r->a.cwd) {
			ub_json_escape(esc, 0, 160, r->a.cwd);
			ub_buf_append(&out, tmp, (size_t)snprintf(tmp, sizeof(tmp), "\"request: %s\"", esc));
		} else if (ub_json_is(k, "\"dumpable\"") && r->a.builtin) {
			ub_buf_append(&out, "\"0 (builtin: no exec)\"", 22);
		} else {
			ub_buf_append(&out, val.p, val.len);
		}
	}
	if (r->route == ROUTE_TEMPLATE)
		snprintf(tmp, sizeof(tmp), ",\"context\":\"cached: captured %lld ms ago, checked against init before this spawn\"}",
			 ub_now_ms() - r->tmpl_created);
	else
		snprintf(tmp, sizeof(tmp), ",\"context\":\"captured for this spawn%s\"}", r->retried ? " (the cached one was stale)" : "");
	ub_buf_append(&out, tmp, strlen(tmp));
	return out.p;
}

/* Has the request's init exited (its pidfd, never its pid)? */
static int init_gone(const struct req *r)
{
	return ub_ctx_target_exited(r->a.target.pidfd);
}

/* C's ppid and start time, for the "started" event: the start time lets the
 * broker tell C from a later process with the same pid.  Read after C's go,
 * so C may have exited meanwhile: the pidfd still naming an unreaped process
 * after the read proves the file was C's; else both stay 0 (unknown). */
static void read_c_stat(struct req *r)
{
	char path[64], st[1024];
	unsigned long long ppid, start;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)r->cpid);
	/* field 4, ppid: init's once B has exited (a template's C: from its
	 * clone); with PIDFD_GET_INFO's ppid this was the same read, and it
	 * exists before 6.13 */
	if (r->cpid > 0 && ub_read_small_at(AT_FDCWD, path, st, sizeof(st)) == 0 &&
	    ub_proc_stat_field(st, strlen(st), UB_STAT_PPID, &ppid) == 0 &&
	    ub_proc_stat_field(st, strlen(st), UB_STAT_START_TIME, &start) == 0 && ub_pidfd_pid(r->cpidfd) > 0) {
		r->c_ppid = (int)ppid;
		r->c_start = start;
	}
}

/* C's go ('G'), once the zygote knows its pid and (cold path) B is gone:
 * then init is its parent.  And REQ_RUNNING with the "started" event, at the
 * same time.  A template's C was cloned after the template's check passed
 * (its 'P' says so); it may be running already (template_c_waits). */
static void maybe_start(struct req *r)
{
	char *f;

	/* Before 6.15 the status of a C that died before its go (killed with its
	 * pid namespace as init died) is lost: it never ran, so say why, as the
	 * cold path would have, instead of an exit without a status. */
	if (r->phase == REQ_STARTING && !r->error && r->cpidfd >= 0 && !ub_compat_has(UB_COMPAT_PIDFD_INFO) &&
	    ub_ctx_target_exited(r->cpidfd) && !r->have_status) {
		r->error = strdup(init_gone(r) ? "{\"code\":\"E_INIT_EXITED\",\"step\":\"the upcall was killed before it started: init exited\",\"errno\":3}"
					   : "{\"code\":\"E_SPAWN\",\"step\":\"the upcall was killed before it started\",\"errno\":3}");
		return;
	}

	if (r->phase != REQ_STARTING || r->cpidfd < 0 || !r->b_exited || r->error || r->timed_out)
		return;
	if (!r->fields && !(r->tmpl && r->tmpl->fields))
		return; /* the template has not said it is ready yet */
	if (r->route != ROUTE_TEMPLATE || template_c_waits(&r->a)) {
		send(r->sock, "G", 1, MSG_NOSIGNAL);
		PROF(r - reqs, PF_Z_GO);
	}
	f = request_fields(r);
	ub_free_zeroed(r->fields);
	r->fields = f;
	if (r->started_event)
		read_c_stat(r);
	r->phase = REQ_RUNNING;
	PROF(r - reqs, PF_Z_STARTED);
	if (r->started_event && r->cpid > 0) /* 0: C was gone when its pidfd came (killed with init, or done already) */
		emit_started(r->id, (int)r->cpid, r->c_ppid, r->c_start);
}

static void on_message(struct req *r, const char *msg, size_t n, const int *fds, int nfds)
{
	pid_t cpid;
	int i;

	if (n >= 1 && msg[0] == 'P' && (nfds == 1 || nfds == 2) && r->cpidfd < 0) {
		/* from B: C's and B's pidfds (C is init's once B is gone); from a
		 * template: C's only (cloned with CLONE_PARENT: init's already,
		 * and after the template's check passed) */
		r->cpidfd = fds[0];
		r->bpidfd = nfds == 2 ? fds[1] : -1;
		r->b_exited = nfds == 1 || ub_ctx_target_exited(r->bpidfd); /* often gone already */
		PROF(r - reqs, PF_Z_GOT_P);
		cpid = ub_pidfd_pid(r->cpidfd);
		if (cpid > 0) {
			/* alive, so the pid is its: C waits for 'G' (or is a
			 * template's builtin, whose status the kernel keeps) */
			r->cpid = cpid;
			r->cpid_at_ns = ub_now_ns();
		}
		if (r->timed_out || r->phase == REQ_DONE)
			kill_tree(r);
		return;
	}
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	if (n >= 1 && msg[0] == 'R' && !r->fields && ub_json_validate(msg + 1, n - 1) == 0) {
		r->fields = strndup(msg + 1, n - 1);
	} else if (n >= 1 && msg[0] == 'E' && !r->error && ub_json_validate(msg + 1, n - 1) == 0) {
		r->error = strndup(msg + 1, n - 1);
	}
	/* 'S' (init's context changed): the template cloned nothing and exits;
	 * its EOF sends the request cold (retry_cold) */
}

void on_sock(struct req *r)
{
	for (;;) {
		char data[MSG_MAX];
		int fds[4], nfds = 0;
		ssize_t n = ub_recv_fds(r->sock, data, sizeof(data), fds, 4, &nfds, MSG_DONTWAIT, NULL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			ub_close_fd(&r->sock); /* A, B and C all closed their end */
			break;
		}
		on_message(r, data, (size_t)n, fds, nfds);
	}
	maybe_start(r);
}

/* Output beyond the cap is read and dropped, so the program never blocks on
 * a full pipe; the event says "truncated".  A stream request's stdout goes
 * out as it comes, one stdout data frame per read. */
void on_stream(struct req *r, struct stream *s, size_t cap)
{
	char *tmp = stream_tmp;
	int rounds;

	for (rounds = 0; rounds < 16; rounds++) {
		ssize_t n = read(s->fd, tmp, sizeof(stream_tmp));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			ub_close_fd(&s->fd);
			return;
		}
		if (r->a.stream && s == &r->out) {
			emit_data(UB_ZYGOTE_FRAME_STDOUT, r->id, tmp, (size_t)n);
			continue;
		}
		if (s->data.len < cap) {
			size_t take = (size_t)n < cap - s->data.len ? (size_t)n : cap - s->data.len;
			if (ub_buf_append(&s->data, tmp, take) < 0)
				take = 0;
			if (take < (size_t)n)
				s->truncated = 1;
		} else {
			s->truncated = 1;
		}
	}
}

void on_stdin_pipe(struct req *r)
{
	ssize_t n = write(r->in_fd, r->a.input + r->in_off, r->a.input_len - r->in_off);

	if (n > 0)
		r->in_off += (size_t)n;
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		ub_close_fd(&r->in_fd); /* the program closed its stdin (EPIPE) */
	else if (r->in_off >= r->a.input_len && (!r->a.stream || r->in_eof))
		ub_close_fd(&r->in_fd); /* done */
}

void on_a_exit(struct req *r)
{
	int st;
	pid_t p = waitpid(r->apid, &st, WNOHANG);

	if (p == r->apid || (p < 0 && errno == ECHILD)) {
		r->a_reaped = 1;
		ub_close_fd(&r->apidfd);
	}
}

void check_request(struct req *r, long long now)
{
	if (r->phase == REQ_DONE) {
		if (r->a_reaped)
			free_req(r);
		return;
	}
	if (!r->timed_out && now >= r->deadline) {
		r->timed_out = 1;
		r->grace_deadline = now + KILL_GRACE_MS;
		kill_tree(r);
		if (r->phase == REQ_STARTING && r->tmpl && r->tmpl->live)
			retire(r->tmpl, 1); /* it may be what is stuck */
	}
	if (r->sock >= 0 && (r->c_exited || (r->a_reaped && r->route != ROUTE_TEMPLATE)))
		on_sock(r); /* whatever A or C said before exiting */
	if (r->phase == REQ_STARTING) {
		maybe_start(r); /* the template's fields may have come meanwhile */
		/* still spawning: done when every spawner process has gone */
		int gone = r->sock < 0 && r->a_reaped && (r->cpidfd < 0 || r->c_exited);
		if (gone && !r->timed_out && !r->error && retry_cold(r, now))
			return;
		if (gone || (r->timed_out && now >= r->grace_deadline)) {
			if (r->error && !r->timed_out)
				emit_child_error(r);
			else if (r->killed)
				emit_native_error(r, "E_SPAWN", "killed on request before it started", ECANCELED);
			else if (r->timed_out)
				emit_native_error(r, "E_UPCALL_TIMEOUT", "spawn", ETIMEDOUT);
			else
				emit_native_error(r, "E_SPAWN", "the spawner exited without reporting", EPROTO);
			kill_tree(r);
			finish(r);
		}
		return;
	}
	if ((r->c_exited && r->out.fd < 0 && r->err.fd < 0) || (r->timed_out && now >= r->grace_deadline)) {
		if (r->error && !r->timed_out)
			emit_child_error(r); /* exec failed in C */
		else
			emit_exit(r);
		finish(r);
	}
}
