{
  "variables": {
    # upcall-request-key and its selftest are linked by native-bindings/request-key/build-handler.sh
    # (musl or static where the machine allows: the handler's start-up is on every key request's path).
    "urk_sources": [
      "native-bindings/client/ub-client.c",
      "native-bindings/basic/base64.c",
      "native-bindings/basic/buf.c",
      "native-bindings/basic/fd.c",
      "native-bindings/basic/file.c",
      "native-bindings/basic/json.c",
      "native-bindings/basic/proc.c",
      "native-bindings/basic/time.c",
      "native-bindings/basic/utf8.c"
    ],
    "urk_headers": [
      "native-bindings/request-key/upcall-request-key.h",
      "native-bindings/include/ub-client.h",
      "native-bindings/include/ub-json.h",
      "native-bindings/include/ub-wire.h",
      "native-bindings/basic/base64.h",
      "native-bindings/basic/buf.h",
      "native-bindings/basic/fd.h",
      "native-bindings/basic/file.h",
      "native-bindings/basic/frame.h",
      "native-bindings/basic/proc.h",
      "native-bindings/basic/time.h",
      "native-bindings/basic/utf8.h"
    ]
  },
  "target_defaults": {
    "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"],
    "include_dirs": ["native-bindings/include", "native-bindings"]
  },
  "targets": [
    {
      "target_name": "ub-basic",
      "type": "static_library",
      "sources": [
        "native-bindings/basic/base64.c",
        "native-bindings/basic/buf.c",
        "native-bindings/basic/fd.c",
        "native-bindings/basic/file.c",
        "native-bindings/basic/json.c",
        "native-bindings/basic/proc.c",
        "native-bindings/basic/time.c",
        "native-bindings/basic/utf8.c"
      ],
      "cflags": ["-fPIC"]
    },
    {
      "target_name": "ub-context",
      "type": "static_library",
      "dependencies": ["ub-basic"],
      "sources": [
        "native-bindings/context/open.c",
        "native-bindings/context/capture.c",
        "native-bindings/context/apply.c",
        "native-bindings/context/check.c"
      ]
    },
    {
      "target_name": "ub-netrelay",
      "type": "static_library",
      "dependencies": ["ub-basic"],
      "sources": ["native-bindings/netrelay/netrelay.c"]
    },
    {
      "target_name": "ub-client",
      "type": "static_library",
      "dependencies": ["ub-basic"],
      "sources": ["native-bindings/client/ub-client.c"],
      "cflags": ["-fPIC"]
    },
    {
      "target_name": "upcall-spawner",
      "type": "executable",
      "dependencies": ["ub-context", "ub-netrelay", "ub-basic"],
      "sources": ["native-bindings/spawner/spawner.c"]
    },
    {
      "target_name": "upcall-zygote",
      "type": "executable",
      "dependencies": ["ub-context", "ub-netrelay", "ub-client", "ub-basic"],
      "sources": [
        "native-bindings/zygote/main.c",
        "native-bindings/zygote/wire.c",
        "native-bindings/zygote/request.c",
        "native-bindings/zygote/children.c",
        "native-bindings/zygote/template.c",
        "native-bindings/zygote/exit-status.c"
      ]
    },
    {
      "target_name": "upcall-request-key",
      "type": "none",
      "actions": [{
        "action_name": "build-handler",
        "inputs": ["native-bindings/request-key/build-handler.sh", "native-bindings/request-key/upcall-request-key.c", "<@(urk_sources)", "<@(urk_headers)"],
        "outputs": ["<(PRODUCT_DIR)/upcall-request-key"],
        "action": ["sh", "native-bindings/request-key/build-handler.sh", "<(PRODUCT_DIR)/upcall-request-key", "native-bindings/request-key/upcall-request-key.c", "<@(urk_sources)"]
      }]
    },
    {
      "target_name": "upcall-mount-in",
      "type": "executable",
      "dependencies": ["ub-context", "ub-basic"],
      "sources": ["native-bindings/mount/mount-in.c"]
    },
    {
      "target_name": "upcall-mount-watch",
      "type": "executable",
      "sources": ["native-bindings/mount/mount-watch.c"]
    },
    {
      "target_name": "ub-mount-helper",
      "type": "executable",
      "dependencies": ["ub-client", "ub-basic"],
      "sources": ["examples/c-mount-helper/ub-mount-helper.c"]
    },
    {
      "target_name": "ub-client-selftest",
      "type": "executable",
      "dependencies": ["ub-client", "ub-basic"],
      "sources": ["native-bindings/test/ub-client-selftest.c"]
    },
    {
      "target_name": "ub-context-selftest",
      "type": "executable",
      "dependencies": ["ub-context", "ub-basic"],
      "sources": ["native-bindings/test/context-selftest.c"]
    },
    {
      "target_name": "ub-zygote-wire-selftest",
      "type": "executable",
      "dependencies": ["ub-basic"],
      "sources": [
        "native-bindings/test/zygote-wire-selftest.c",
        "native-bindings/zygote/wire.c"
      ]
    },
    {
      "target_name": "upcall-request-key-selftest",
      "type": "none",
      "actions": [{
        "action_name": "build-handler-selftest",
        "inputs": ["native-bindings/request-key/build-handler.sh", "native-bindings/test/upcall-request-key-selftest.c", "native-bindings/request-key/upcall-request-key.c", "native-bindings/test/selftest.h", "<@(urk_sources)", "<@(urk_headers)"],
        "outputs": ["<(PRODUCT_DIR)/upcall-request-key-selftest"],
        "action": ["sh", "native-bindings/request-key/build-handler.sh", "<(PRODUCT_DIR)/upcall-request-key-selftest", "native-bindings/test/upcall-request-key-selftest.c", "<@(urk_sources)"]
      }]
    }
  ]
}
