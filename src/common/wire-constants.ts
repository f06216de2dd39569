/**
 * TypeScript mirror of native-bindings/include/ub-wire.h: what the broker and
 * its native programs (upcall-zygote, upcall-spawner, upcall-mount-in, the
 * netrelay builtin, the C client) agree on. tests/unit/wire-constants.test.ts
 * parses the header and fails if the two disagree.
 */
export const W = {
  UB_DEFAULT_SOCKET: '/run/upcall-broker/broker.sock',

  UB_FRAME_HEADER: 4,

  UB_EXIT_SPAWNER: 125,
  UB_EXIT_CANNOT_EXEC: 126,
  UB_EXIT_NOT_FOUND: 127,

  UB_ZYGOTE_MAX_INFLIGHT: 512,
  UB_ZYGOTE_MAX_REQUEST_FRAME: 8 * 1024 * 1024,
  UB_ZYGOTE_MAX_OUTPUT_CAP: 8 * 1024 * 1024,
  UB_ZYGOTE_MAX_TIMEOUT_MS: 3_600_000,
  UB_ZYGOTE_MAX_ARGS: 256,

  UB_ZYGOTE_EVENT_STARTED: 'started',
  UB_ZYGOTE_EVENT_EXIT: 'exit',
  UB_ZYGOTE_EVENT_ERROR: 'error',

  UB_ZYGOTE_FRAME_STDIN: 1,
  UB_ZYGOTE_FRAME_STDOUT: 2,
  UB_ZYGOTE_DATA_HEADER: 9,

  UB_ZYGOTE_FRAME_EOF: 3,
  UB_ZYGOTE_FRAME_KILL: 4,

  UB_ZYGOTE_FRAME_STARTED: 5,
  UB_ZYGOTE_STARTED_LEN: 25,
  UB_ZYGOTE_FRAME_ERROR: 6,
  UB_ZYGOTE_ERROR_HEADER: 14,
  UB_ZYGOTE_ERROR_NO_ID: 1,
  UB_ZYGOTE_ERROR_MAX_STRING: 1024,

  UB_ZYGOTE_FRAME_SPAWN: 7,
  UB_ZYGOTE_SPAWN_HEADER: 43,
  UB_ZYGOTE_MODE_EXEC: 0,
  UB_ZYGOTE_MODE_ECHO_CONTEXT: 1,
  UB_ZYGOTE_MODE_NETRELAY: 2,
  UB_ZYGOTE_SPAWN_HOST: 1,
  UB_ZYGOTE_SPAWN_STREAM: 2,
  UB_ZYGOTE_SPAWN_NO_STARTED: 4,
  UB_ZYGOTE_SPAWN_ENV: 8,

  UB_NETRELAY_MAX_FILE: 1024 * 1024,
  UB_NETRELAY_MAX_MSG: 65535,
} as const;
