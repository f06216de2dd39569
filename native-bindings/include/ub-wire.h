/*
 * ub-wire.h: what the broker and its native programs (upcall-zygote,
 * upcall-spawner, upcall-mount-in, the netrelay builtin, the C client) must
 * agree on.  One place for all of it; the TypeScript mirror is
 * src/common/wire-constants.ts and tests/unit/wire-constants.test.ts checks
 * that the two agree.
 *
 * Format rule (the test parses it): one "#define NAME VALUE" per line, VALUE
 * a plain decimal integer or a "string" without escapes.
 */
#ifndef UB_WIRE_H
#define UB_WIRE_H

/* The broker's admin socket when none is given. */
#define UB_DEFAULT_SOCKET "/run/upcall-broker/broker.sock"

/* Frames on the zygote's pipes, the netrelay's and the broker socket: a
 * 4-byte big-endian length, then the body. */
#define UB_FRAME_HEADER 4

/* Exit statuses of the native programs that run one program (the spawner,
 * the mount helper), as a shell's: the program's own status otherwise. */
#define UB_EXIT_SPAWNER 125
#define UB_EXIT_CANNOT_EXEC 126
#define UB_EXIT_NOT_FOUND 127

/* The zygote: requests in flight at once (more: E_BUSY), and its limits. */
#define UB_ZYGOTE_MAX_INFLIGHT 512
#define UB_ZYGOTE_MAX_REQUEST_FRAME 8388608
#define UB_ZYGOTE_MAX_OUTPUT_CAP 8388608
#define UB_ZYGOTE_MAX_TIMEOUT_MS 3600000
#define UB_ZYGOTE_MAX_ARGS 256

/* The zygote's events by name ("event"): the exit event's JSON, and the
 * objects the broker decodes the started and error records into. */
#define UB_ZYGOTE_EVENT_STARTED "started"
#define UB_ZYGOTE_EVENT_EXIT "exit"
#define UB_ZYGOTE_EVENT_ERROR "error"

/* The zygote's binary frames: raw bytes of a stream request's stdin (broker
 * to zygote) and stdout (zygote to broker).  Body: the kind (one byte, never
 * one a JSON text starts with), the request id (8 bytes, big-endian), then
 * the bytes. */
#define UB_ZYGOTE_FRAME_STDIN 1
#define UB_ZYGOTE_FRAME_STDOUT 2
#define UB_ZYGOTE_DATA_HEADER 9

/* Control records, broker to zygote, the same header and nothing after it:
 * end a stream request's stdin once what is queued is written (EOF), or kill
 * the request's tree now (KILL).  Ignored for an id not in flight. */
#define UB_ZYGOTE_FRAME_EOF 3
#define UB_ZYGOTE_FRAME_KILL 4

/* Events, zygote to broker, the same header first.  STARTED: then the pid
 * and ppid (4 bytes each, big-endian) and the start time (8 bytes, clock
 * ticks after boot as /proc/<pid>/stat field 22; 0: unknown), nothing after.
 * ERROR: then a flag byte (UB_ZYGOTE_ERROR_NO_ID: the frame it answers could
 * not be read, so the id means nothing), errno (4 bytes, big-endian, signed),
 * then four strings, each a 2-byte big-endian length and that many bytes of
 * UTF-8: the broker's code, the native code, the step, the message; nothing
 * after.  The exit event stays JSON. */
#define UB_ZYGOTE_FRAME_STARTED 5
#define UB_ZYGOTE_STARTED_LEN 25
#define UB_ZYGOTE_FRAME_ERROR 6
#define UB_ZYGOTE_ERROR_HEADER 14
#define UB_ZYGOTE_ERROR_NO_ID 1
#define UB_ZYGOTE_ERROR_MAX_STRING 1024

/* The spawn request, broker to zygote.  Header: kind, id, mode (1 byte:
 * UB_ZYGOTE_MODE_*), flags (1 byte: UB_ZYGOTE_SPAWN_*), timeoutMs, outputCap,
 * initPidfd, initPid (4 bytes each), initStartTime, pidns (8 bytes each),
 * stdioFd (4 bytes: with UB_ZYGOTE_SPAWN_SOCKET the broker's fd number of a
 * socket, taken with pidfd_getfd as initPidfd is, that is the program's
 * stdin and stdout instead of pipes; else 0).  Then argv: a count (2 bytes) and each string as a 4-byte length and its
 * bytes; env: the same, each "NAME=value"; cwd: a 4-byte length and its
 * bytes (0: none); stdin: a 4-byte length and its bytes.  Nothing after.
 * Integers big-endian; strings without NUL. */
#define UB_ZYGOTE_FRAME_SPAWN 7
#define UB_ZYGOTE_SPAWN_HEADER 47
#define UB_ZYGOTE_MODE_EXEC 0
#define UB_ZYGOTE_MODE_ECHO_CONTEXT 1
#define UB_ZYGOTE_MODE_NETRELAY 2
#define UB_ZYGOTE_SPAWN_HOST 1
#define UB_ZYGOTE_SPAWN_STREAM 2
#define UB_ZYGOTE_SPAWN_NO_STARTED 4
#define UB_ZYGOTE_SPAWN_ENV 8
#define UB_ZYGOTE_SPAWN_SOCKET 16

/* The netrelay builtin (netrelay.h): the largest file and DNS message. */
#define UB_NETRELAY_MAX_FILE 1048576
#define UB_NETRELAY_MAX_MSG 65535

#endif /* UB_WIRE_H */
