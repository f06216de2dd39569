/*
 * zygote.h: what the parts of upcall-zygote share (main.c, wire.c, request.c,
 * children.c, template.c, exit-status.c).
 *
 * One request, cold (no template for its init yet):
 *
 *   zygote --fork--> A  outside: with init's pidfd (the broker's, taken with
 *                       pidfd_getfd as the request was read; its pid namespace
 *                       checked), captures its context from the
 *                       host's view (context/), applies what needs the host
 *                       (cgroups, rlimits...), then enters: setns into init's
 *                       namespaces, chroot, credentials, capabilities
 *          A --fork--> B  inside the container's pid namespace (setns of a
 *                       pid namespace applies to children only)
 *          B --clone3(CLONE_PIDFD)--> C  the upcall; B exits at once
 *
 * B exits inside the container's pid namespace, so the kernel re-parents C to
 * the container's init (find_child_reaper() takes the exiting parent's active
 * pid namespace; an intermediate outside it would hand C to the host's init).
 * B sends C's pidfd and its own here; once B's pidfd polls readable C is
 * init's child, and only then does the zygote tell C to go on (the 'G' byte)
 * and emit "started", so the "started" event means "a child of init".
 *
 * With the context cache, A forks B' instead of B: B' forks the template T and
 * exits, so T too is a child of the container's init, inside its pid
 * namespace, with init's context applied.  T serves this request and later
 * ones of the same init: for each it checks init's context against the
 * captured one (context/check.c), then clones C with CLONE_PARENT (init's
 * child from its first instant).  That C waits for the zygote's 'G' too,
 * except a builtin on a kernel that keeps a reaped child's exit status
 * (template_c_waits in template.c), which runs at once.
 *
 * C's exit comes from its pidfd (POLLIN); its status from exit-status.c.
 *
 * Messages on a request's SOCK_SEQPACKET socketpair (fd 3 in A, B, T and C),
 * one per datagram, first byte the kind:
 *   R{fields}              A -> zygote  the context's fields, once A has entered
 *   P (+ C's, B's pidfds)  B -> zygote  C is cloned (init's child once B is gone)
 *   P (+ C's pidfd)        T -> zygote  the same from a template (no B), sent
 *                                       only after init's context checked unchanged
 *   S<why>                 T -> zygote  init's context changed: T cloned nothing
 *                                       and exits; the request is retried cold
 *   E{code,step,errno}     A/B/T/C -> zygote  a failure before exec
 *   G                      zygote -> C  go on: keyring, seccomp, exec
 * and on a template's control socket (fd 4 in T):
 *   T{fields} (+ T's pidfd)  T -> zygote  ready: the cache holds it
 *   Q... (+ four fds)        zygote -> T  a request (template.c, qmsg_write)
 *
 * What held a request's data (argv, env, cwd, stdin, output, frames, events)
 * is zeroed before it is freed, and a growing buffer is moved by hand
 * (basic/buf.c; realloc would leave the old copy in a free chunk): every child
 * copies the zygote's heap, and those that stay inside a container
 * (templates, builtins) must find nothing of other tenants' requests in it.
 * scrub_foreign() (children.c) clears what is still live in each A right
 * after the fork.
 *
 * See native-bindings/README.md for the request and event formats.
 */
#ifndef UB_ZYGOTE_H
#define UB_ZYGOTE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "basic/buf.h"
#include "context/context.h"
#include "ub-json.h"
#include "ub-wire.h"

#define ZYGOTE_VERSION "0.1.0"
#define MAX_OUTQ (256u << 20)
#define KILL_GRACE_MS 2000
#define SHUTDOWN_WAIT_MS 2000
#define MSG_MAX 8192
#define CHILD_SOCK 3
#define TMPL_CTL 4                      /* a template's end of its control socket */
#define A_INIT_PIDFD 5                  /* in A: init's pidfd (the request's), below close_range's start */
#define MAX_TEMPLATES 256
#define TEMPLATE_SLOTS (MAX_TEMPLATES * 2) /* live ones, and retired ones until reaped */
#define QMSG_MAX (64u << 10)            /* a request forwarded to a template, at most */

enum builtin { BUILTIN_NONE, BUILTIN_ECHO_CONTEXT, BUILTIN_NETRELAY };

struct spawn_args {
	/* target.pidfd: init's pidfd, taken from the broker (pidfd_getfd) as the
	 * frame is parsed; the zygote's until the request is freed (free_req).
	 * target.pid, start_time and pidns_ino only find a template (the cache
	 * key) and are compared with what the pidfd names: init is never looked
	 * up by number. */
	struct ub_ctx_target target;
	int broker_fd;                  /* "initPidfd": the broker's fd number of init's pidfd */
	/* UB_ZYGOTE_SPAWN_SOCKET: the broker's socket that is the program's
	 * stdin and stdout (no pipes, no stdin/stdout frames): "stdioFd", the
	 * broker's fd number, and stdio_fd, our copy (pidfd_getfd, as init's
	 * pidfd), held until the request's final event; else -1 both */
	int stdio_broker_fd, stdio_fd;
	int builtin;                    /* enum builtin; BUILTIN_NONE: exec argv */
	int stream;                     /* stdout in data frames; stdin (data frames) open until "eof" */
	char **argv, **envp;            /* NULL-terminated */
	const char *path;               /* PATH of envp, or NULL */
	char *cwd;
	unsigned char *input;
	size_t input_len;
	long long timeout_ms;
	size_t output_cap;
};

struct stream {
	int fd;
	struct ub_buf data;
	int truncated;
};

/*
 * A template (the context cache): the A of an earlier request that, instead of
 * exiting, stays outside the container with init's context applied (cgroups,
 * rlimits, setns, root, credentials...) and forks a B per request it is sent.
 * Kept for a short time (--context-ttl-ms, --context-idle-ms), and every B
 * checks init's context against the captured one first (check_context): a
 * change sends the request down the cold path, which captures anew.
 */
struct tmpl {
	int used;                       /* slot taken until the process is reaped */
	int live;                       /* takes requests */
	int pidfd, ctl;                 /* T (from its 'T' message), our end of its control socket */
	pid_t init_pid;
	unsigned long long start_time, pidns_ino;
	int host;
	char *fields;                   /* JSON from T once it is ready ('T'), else NULL */
	long long created, last_used;
	long long ttl_ms;               /* --context-ttl-ms less up to a quarter (new_template) */
	unsigned long long uses;
	struct rlimit rlim[RLIM_NLIMITS]; /* ours when T was forked: the base of its degraded limits */
};

/*
 * A request's life, in its slot:
 *
 *   REQ_FREE --accepted--> REQ_STARTING --C told to go ('G'), or a template's
 *                                         builtin C known ('P')--> REQ_RUNNING
 *   REQ_STARTING or REQ_RUNNING --its one final event--> REQ_DONE
 *   REQ_DONE --A reaped--> REQ_FREE
 *
 * REQ_STARTING may take two attempts: one through a template, then (the
 * context was stale, or the template gone) one cold (retry_cold).
 */
enum req_phase { REQ_FREE, REQ_STARTING, REQ_RUNNING, REQ_DONE };

/* The current attempt: who forks C. */
enum req_route {
	ROUTE_COLD,                     /* our own A, B */
	ROUTE_NEW_TEMPLATE,             /* our own A, whose B' becomes tmpl */
	ROUTE_TEMPLATE,                 /* the live template tmpl (no A of its own) */
};

struct req {
	enum req_phase phase;
	unsigned long long id;
	struct spawn_args a;
	pid_t apid;
	int apidfd, a_reaped;
	enum req_route route;
	struct tmpl *tmpl;              /* served by (or becoming) this template */
	int bpidfd, b_exited;           /* B, from its 'P' message: C is init's child once B is gone */
	int retried;                    /* the cold retry of a template attempt: no third */
	int killed;                     /* "kill" op: the deadline was moved to now */
	int in_eof;                     /* a stream request's stdin ends after what is queued */
	int started_event;              /* emit "started" (the broker wants the pid early) */
	long long tmpl_created;
	int sock;                       /* our end of the socketpair */
	int in_fd;
	size_t in_off;
	struct stream out, err;
	int cpidfd;
	pid_t cpid;
	int c_exited, have_status, status;
	long long cpid_at_ns;           /* CLOCK_MONOTONIC when C's pid was learned (C alive then) */
	int c_ppid;                     /* C's ppid and start time, read as the zygote learned its pid */
	unsigned long long c_start;
	char *fields, *error;
	long long deadline, grace_deadline;
	int timed_out;
};


/* main.c: the request slots, the options, the pipes to the broker */
extern struct req reqs[UB_ZYGOTE_MAX_INFLIGHT];
/* Slots at or past these have never been used (a new request or template
 * takes the lowest free slot): the loops over every slot stop there. */
extern size_t reqs_hi, tmpls_hi;
extern int opt_templates;
extern long long opt_ttl_ms, opt_idle_ms;
extern int opt_max_templates;
extern struct ub_buf inbuf;
/* not on the stack, so that scrub_foreign() finds them: what was last read
 * from the broker and from an upcall, the last request sent to a template */
extern char stdin_tmp[65536], stream_tmp[65536];
extern size_t outq_off, discard;
extern int stdin_eof;
extern pid_t zygote_pid;
/* A pidfd of the broker (our parent), from startup: init pidfds are taken
 * from it with pidfd_getfd(2) (take_init_pidfd, request.c). */
extern int broker_pidfd;

/* wire.c: the events not yet written to stdout */
extern struct ub_buf outq;

/* template.c */
extern struct tmpl tmpls[TEMPLATE_SLOTS];
extern char qmsg_out[QMSG_MAX];
extern int zargc;                   /* main's argv, to rename the template */
extern char **zargv;

/* children.c: in A and its template */
extern struct ub_ctx_snapshot snap;
extern int hostproc;
extern int in_template;

/* exit-status.c: the proc connector, or -1; whether C's status outlives
 * its reaping by init (PIDFD_INFO_EXIT, Linux 6.15: then the zygote needs
 * neither C's pid nor the connector for it) */
extern int cn_fd;
extern int kernel_keeps_exit_status;


/*
 * profiling (bench/profile-zygote.sh builds with -DUB_ZYGOTE_PROFILE): every
 * process of a request stamps CLOCK_MONOTONIC into a shared slot; the zygote
 * appends one line per request to /tmp/ub-zygote-profile.<pid>.log (main.c).
 */
#ifdef UB_ZYGOTE_PROFILE
#include "basic/time.h"
enum { PF_PARSED, PF_FORKED, PF_A_START, PF_A_OPEN, PF_A_CAPTURE, PF_A_OUTSIDE, PF_A_ENTER, PF_A_FORK_B,
       PF_B_START, PF_B_CHECKED, PF_B_CLONE, PF_B_SENT, PF_A_REAPED, PF_Z_GOT_P, PF_Z_GO, PF_Z_STARTED, PF_C_GO, PF_Z_C_EXIT, PF_Z_EMIT, PF_COUNT };
extern long long (*prof)[PF_COUNT];
extern int prof_slot;
#define PROF(slot, k) do { if (prof) prof[(slot)][(k)] = ub_now_ns(); } while (0)
void prof_init(void);
void prof_dump(int slot);
#else
#define PROF(slot, k) do { } while (0)
#endif

/* wire.c */
/* Queue one frame: its length, then body. */
void emit(const char *body, size_t len);
/* A binary frame of kind (UB_ZYGOTE_FRAME_*): 0 and its id and bytes, or -1. */
int parse_data_frame(const char *body, size_t len, int kind, unsigned long long *id, const char **data, size_t *n);
/* A control record (UB_ZYGOTE_FRAME_EOF or _KILL): 0 and its kind and id, or
 * -1 (not one, or bytes after the header). */
int parse_control_frame(const char *body, size_t len, int *kind, unsigned long long *id);
/* Queue a binary frame of kind for request id. */
void emit_data(int kind, unsigned long long id, const char *data, size_t n);
/* An error record (ub-wire.h); have_id 0: answers a frame that could not be read. */
void emit_error_raw(int have_id, unsigned long long id, const char *code, const char *native,
			   const char *step, int err, const char *message);
/* A started record (ub-wire.h); start_time 0: unknown. */
void emit_started(unsigned long long id, int pid, int ppid, unsigned long long start_time);
void emit_native_error(struct req *r, const char *native, const char *step, int err);
void emit_child_error(struct req *r);
void emit_exit(struct req *r);
void free_args(struct spawn_args *a);
/* A spawn record (UB_ZYGOTE_FRAME_SPAWN, ub-wire.h, at least its 9-byte id
 * header) into *a and *started_event: 0, or -1 and *why (free_args(a) either way). */
int parse_spawn_record(const char *body, size_t len, int *started_event, struct spawn_args *a, const char **why);

/* children.c */
void __attribute__((noreturn)) child_fail(const struct ub_ctx_error *e);
void __attribute__((noreturn)) child_fail_errno(const char *code, const char *step, int err);
/* wait_go: C waits for the zygote's 'G' before it runs (see template_c_waits). */
void __attribute__((noreturn)) run_c(struct ub_context *ctx, const struct spawn_args *a, int wait_go);
int enter_request_cwd(const char *cwd, struct ub_ctx_error *e);
int check_context(struct ub_context *c, char *why, size_t cap);
void scrub_foreign(const struct spawn_args *own);
void __attribute__((noreturn)) run_a(const struct spawn_args *a, int in, int out, int err, int sock, int ctl);
void kill_tree(struct req *r);

/* template.c */
int qmsg_size(const struct spawn_args *a);
int template_c_waits(const struct spawn_args *a);
void __attribute__((noreturn)) run_template(struct ub_context *ctx, const struct spawn_args *a, const char *fields);
void own_rlimits(struct rlimit *rl);
void retire(struct tmpl *t, int kill_it);
void forget_template(struct tmpl *t);
struct tmpl *find_template(const struct spawn_args *a, long long now);
int pending_template(const struct spawn_args *a);
struct tmpl *new_template(long long now);
void on_template_ctl(struct tmpl *t);
int send_to_template(struct tmpl *t, struct req *r, const int fds[4]);
void expire_templates(long long now);

/* exit-status.c */
void cn_open(void);
void cn_drain(void);
void read_status(struct req *r);

/* request.c */
void reset_req(struct req *r);
int nonblock(int fd);
void handle_frame(const char *body, size_t len);
void on_sock(struct req *r);
void on_stream(struct req *r, struct stream *s, size_t cap);
void on_stdin_pipe(struct req *r);
void on_a_exit(struct req *r);
void check_request(struct req *r, long long now);

#endif /* UB_ZYGOTE_H */
