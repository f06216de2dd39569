/*
 * netrelay.c: see netrelay.h. Everything here runs inside the container, as a
 * child of its init, after the spawner has entered every namespace, taken the
 * init's root, credentials and seccomp filters: files are opened as the
 * container's user would open them, and sockets are created in its network
 * namespace. Nothing is trusted: sizes are bounded, files must be regular
 * (a FIFO or a device cannot block or feed us forever), every wait has a deadline.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "netrelay.h"
#include "ub-kernel.h"
#include "basic/file.h"
#include "basic/frame.h"
#include "basic/time.h"

#define MAX_REQUEST (UB_NETRELAY_MAX_MSG + 512)

/* Replies wait here while the next request is already read (the broker asks
 * for both resolver files in one write): one write(2) then carries them all,
 * and the zygote relays them as one frame instead of one per reply. Flushed
 * before the relay blocks: before a read, before a DNS query. */
static uint8_t out_buf[64 * 1024];
static size_t out_len;

static int flush_replies(int out)
{
	int r = out_len > 0 ? ub_write_all(out, out_buf, out_len) : 0;
	out_len = 0;
	return r < 0 ? -errno : 0;
}

static int reply(int out, int status, const void *data, size_t len)
{
	uint8_t head[UB_FRAME_HEADER + 1];
	ub_frame_put_len(head, (uint32_t)(len + 1));
	head[UB_FRAME_HEADER] = (uint8_t)status;
	if (out_len + sizeof(head) + len <= sizeof(out_buf)) {
		memcpy(out_buf + out_len, head, sizeof(head));
		if (len > 0)
			memcpy(out_buf + out_len + sizeof(head), data, len);
		out_len += sizeof(head) + len;
		return 0;
	}
	if (flush_replies(out) < 0 || ub_write_all(out, head, sizeof(head)) < 0 || ub_write_all(out, data, len) < 0)
		return -errno;
	return 0;
}

#define MAX_SYMLINKS 40 /* as the kernel's MAXSYMLINKS */

static int same_dir(int a, int b)
{
	struct stat sa, sb;
	return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* openat2's resolution done by hand, for a container whose seccomp filter
 * refuses openat2 (ENOSYS, EPERM): one component at a time with O_NOFOLLOW
 * from `root`, ".." never above it, every symlink read and its text resolved
 * again from `root` (absolute) or the current directory.  A magic link
 * (/proc/<pid>/root, /proc/<pid>/fd/N) is thereby followed only as the text
 * readlink gives, never as the kernel's jump to its object. */
static int open_walk(int root, const char *path, int flags)
{
	char rest[2 * PATH_MAX + 2], target[PATH_MAX], comp[NAME_MAX + 1];
	int cur = dup(root), links = 0, err = 0, fd = -1;
	size_t rlen = strlen(path);

	if (cur < 0)
		return -1;
	if (rlen >= sizeof(rest)) {
		close(cur);
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(rest, path, rlen + 1);
	for (char *p = rest;;) {
		if (*p == '/') {
			int r = dup(root);
			if (r < 0) { err = errno; break; }
			close(cur);
			cur = r;
			while (*p == '/')
				p++;
		}
		if (!*p) { /* the path ends in a directory: not a regular file */
			fd = openat(cur, ".", flags);
			err = fd < 0 ? errno : 0;
			break;
		}
		size_t n = strcspn(p, "/");
		if (n > NAME_MAX) { err = ENAMETOOLONG; break; }
		memcpy(comp, p, n);
		comp[n] = '\0';
		p += n;
		while (*p == '/')
			p++;
		int last = !*p;
		if (!strcmp(comp, ".") && !last)
			continue;
		if (!strcmp(comp, "..") && same_dir(cur, root)) {
			if (last) { fd = openat(cur, ".", flags); err = fd < 0 ? errno : 0; break; }
			continue;
		}
		int next = openat(cur, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		struct stat st;
		if (next < 0 || fstat(next, &st) < 0) { err = errno; if (next >= 0) close(next); break; }
		if (S_ISLNK(st.st_mode)) {
			ssize_t tl = readlinkat(next, "", target, sizeof(target));
			close(next);
			if (tl < 0) { err = errno; break; }
			if ((size_t)tl >= sizeof(target) || ++links > MAX_SYMLINKS) { err = (size_t)tl >= sizeof(target) ? ENAMETOOLONG : ELOOP; break; }
			/* the target, then what was left of the path */
			size_t left = strlen(p);
			if ((size_t)tl + 1 + left + 1 > sizeof(rest)) { err = ENAMETOOLONG; break; }
			memmove(rest + tl + 1, p, left + 1);
			memcpy(rest, target, (size_t)tl);
			rest[tl] = left ? '/' : '\0';
			p = rest;
			continue;
		}
		if (last) {
			close(next);
			/* by name in its directory, without following: a swap for a symlink is ELOOP */
			fd = openat(cur, comp, flags | O_NOFOLLOW);
			err = fd < 0 ? errno : 0;
			break;
		}
		close(cur);
		cur = next;
	}
	close(cur);
	if (fd < 0)
		errno = err ? err : ENOENT;
	return fd;
}

/* `path` as the container sees it, never beyond: resolved inside our root
 * (init's, which the spawner chroot()ed into) with RESOLVE_IN_ROOT, so an
 * absolute symlink or ".." stays inside it, and RESOLVE_NO_MAGICLINKS, so a
 * /proc/<pid>/root or /proc/<pid>/cwd of a process whose root is elsewhere (one
 * that entered the container's namespaces without its root) is no way out. */
static int open_in_root(const char *path, int flags)
{
	struct { uint64_t flags, mode, resolve; } how = {
		.flags = (uint64_t)flags, .resolve = UB_RESOLVE_IN_ROOT | UB_RESOLVE_NO_MAGICLINKS,
	};
	/* Our root never changes (the spawner chroot()ed into init's before we ran,
	 * and we never chroot): opened once, for every request of this relay. */
	static int root = -1;
	int fd;

	if (root < 0 && (root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	fd = (int)syscall(UB_NR_openat2, root, path, &how, sizeof(how));
	if (fd < 0 && (errno == ENOSYS || errno == EPERM))
		fd = open_walk(root, path, flags);
	return fd;
}

static void serve_file(int out, const char *path)
{
	static char data[UB_NETRELAY_MAX_FILE];
	/* O_NONBLOCK: opening a FIFO must not wait for a writer. */
	int fd = open_in_root(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		reply(out, errno, NULL, 0);
		return;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		reply(out, EINVAL, NULL, 0);
		return;
	}
	if (st.st_size > UB_NETRELAY_MAX_FILE) {
		close(fd);
		reply(out, EFBIG, NULL, 0);
		return;
	}
	size_t got = 0;
	for (;;) {
		ssize_t n = read(fd, data + got, sizeof(data) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || (got += (size_t)n) == sizeof(data))
			break;
	}
	close(fd);
	reply(out, 0, data, got);
}

static int make_addr(const char *text, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(port);
		*len = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*len = sizeof(*in6);
		return 0;
	}
	return -EINVAL;
}

/* A non-blocking socket of type connecting to ss (a stream one may still be
 * in progress): the fd, or -errno. */
static int connect_to(const struct sockaddr_storage *ss, socklen_t alen, int type)
{
	int s = socket(ss->ss_family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return -errno;
	if (connect(s, (const struct sockaddr *)ss, alen) < 0 && (type != SOCK_STREAM || errno != EINPROGRESS)) {
		int err = errno;
		close(s);
		return -err;
	}
	return s;
}

/* Wait for events on fd until deadline: 0, or -errno (-ETIMEDOUT). */
static int wait_fd(int fd, short events, long deadline)
{
	return ub_wait_fd(fd, events, deadline) < 0 ? -errno : 0;
}

/* UDP: connect() so the kernel drops datagrams from anyone but the server. */
static int query_udp(const struct sockaddr_storage *ss, socklen_t alen, const uint8_t *msg, size_t mlen,
		     long deadline, uint8_t *buf, size_t *blen)
{
	int s = connect_to(ss, alen, SOCK_DGRAM);
	if (s < 0)
		return s;
	int r = 0;
	if (send(s, msg, mlen, 0) < 0)
		r = -errno;
	while (r == 0) {
		if ((r = wait_fd(s, POLLIN, deadline)) < 0)
			break;
		ssize_t n = recv(s, buf, UB_NETRELAY_MAX_MSG, 0);
		if (n >= 0) {
			*blen = (size_t)n;
			break;
		}
		if (errno != EAGAIN && errno != EINTR)
			r = -errno;
	}
	close(s);
	return r;
}

static int io_deadline(int s, int writing, uint8_t *buf, size_t len, long deadline)
{
	size_t done = 0;
	while (done < len) {
		int r = wait_fd(s, writing ? POLLOUT : POLLIN, deadline);
		if (r < 0)
			return r;
		ssize_t n = writing ? send(s, buf + done, len - done, MSG_NOSIGNAL) : recv(s, buf + done, len - done, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

/* TCP (RFC 1035 4.2.2): two-byte length prefix each way. */
static int query_tcp(const struct sockaddr_storage *ss, socklen_t alen, const uint8_t *msg, size_t mlen,
		     long deadline, uint8_t *buf, size_t *blen)
{
	int s = connect_to(ss, alen, SOCK_STREAM);
	if (s < 0)
		return s;
	int r = wait_fd(s, POLLOUT, deadline);
	if (r == 0) {
		int err = 0;
		socklen_t el = sizeof(err);
		getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el);
		r = -err;
	}
	uint8_t lenbuf[2] = { (uint8_t)(mlen >> 8), (uint8_t)mlen };
	if (r == 0)
		r = io_deadline(s, 1, lenbuf, 2, deadline);
	if (r == 0)
		r = io_deadline(s, 1, (uint8_t *)msg, mlen, deadline);
	if (r == 0)
		r = io_deadline(s, 0, lenbuf, 2, deadline);
	if (r == 0) {
		*blen = ((size_t)lenbuf[0] << 8) | lenbuf[1];
		r = io_deadline(s, 0, buf, *blen, deadline);
	}
	close(s);
	return r;
}

static void serve_query(int out, const uint8_t *p, size_t len)
{
	static uint8_t buf[UB_NETRELAY_MAX_MSG];
	if (len < 8 || p[0] > 1 || 8 + (size_t)p[7] > len) {
		reply(out, EINVAL, NULL, 0);
		return;
	}
	uint16_t port = (uint16_t)((p[1] << 8) | p[2]);
	uint32_t timeout = ub_frame_len(p + 3);
	char addr[64];
	size_t alen = p[7];
	if (alen >= sizeof(addr)) {
		reply(out, EINVAL, NULL, 0);
		return;
	}
	memcpy(addr, p + 8, alen);
	addr[alen] = '\0';
	struct sockaddr_storage ss;
	socklen_t sslen;
	if (make_addr(addr, port, &ss, &sslen) < 0) {
		reply(out, EINVAL, NULL, 0);
		return;
	}
	const uint8_t *msg = p + 8 + alen;
	size_t mlen = len - 8 - alen;
	long deadline = ub_now_ms() + (timeout > 60000 ? 60000 : (long)timeout);
	size_t blen = 0;
	int r = p[0] == 0 ? query_udp(&ss, sslen, msg, mlen, deadline, buf, &blen)
			  : query_tcp(&ss, sslen, msg, mlen, deadline, buf, &blen);
	reply(out, r < 0 ? -r : 0, buf, r < 0 ? 0 : blen);
}

/* Serve one complete request frame (`len` bytes at `req`, which may be
 * followed by more read-ahead input: its byte after the frame is restored). */
static void serve_request(int out, uint8_t *req, uint32_t len)
{
	if (req[0] == 'F') {
		uint8_t after = req[len];
		req[len] = '\0';
		serve_file(out, (const char *)req + 1);
		req[len] = after;
	} else if (req[0] == 'Q') {
		flush_replies(out); /* a query may wait seconds: what is answered goes out first */
		serve_query(out, req + 1, len - 1);
	} else {
		reply(out, EINVAL, NULL, 0);
	}
}

int netrelay_serve(int in, int out)
{
	/* Input is read as it comes, several requests at once: room for one whole
	 * request of the largest size, and a byte past it for serve_request. */
	static uint8_t buf[UB_FRAME_HEADER + MAX_REQUEST + 1];
	size_t have = 0;
	for (;;) {
		uint32_t len = have >= UB_FRAME_HEADER ? ub_frame_len(buf) : 0;
		if (have >= UB_FRAME_HEADER && (len == 0 || len > MAX_REQUEST)) {
			flush_replies(out);
			return EPROTO;
		}
		if (have < UB_FRAME_HEADER || have < UB_FRAME_HEADER + (size_t)len) {
			if (flush_replies(out) < 0)
				return errno;
			ssize_t n = read(in, buf + have, sizeof(buf) - 1 - have);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return errno;
			if (n == 0)
				return have == 0 ? 0 : EPROTO;
			have += (size_t)n;
			continue;
		}
		serve_request(out, buf + UB_FRAME_HEADER, len);
		size_t used = UB_FRAME_HEADER + (size_t)len;
		memmove(buf, buf + used, have - used);
		have -= used;
	}
}

#ifdef NETRELAY_STANDALONE
/* Test build only: the relay as a plain program (the broker runs it as a builtin, without exec). */
int main(void)
{
	return netrelay_serve(0, 1);
}
#endif
