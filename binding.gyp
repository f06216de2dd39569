{
  "targets": [
    {
      "target_name": "upcall-spawner",
      "type": "executable",
      "dependencies": ["ub-context"],
      "sources": ["native-bindings/spawner.c", "native-bindings/netrelay.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "ub-context",
      "type": "static_library",
      "sources": ["native-bindings/context.c"],
      "include_dirs": ["native-bindings"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"],
      "direct_dependent_settings": {
        "include_dirs": ["native-bindings"]
      }
    },
    {
      "target_name": "upcall-zygote",
      "type": "executable",
      "dependencies": ["ub-context", "ub-client"],
      "sources": ["native-bindings/zygote.c", "native-bindings/base64.c", "native-bindings/netrelay.c"],
      "include_dirs": ["native-bindings"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "ub-client",
      "type": "static_library",
      "sources": ["native-bindings/ub-client.c"],
      "include_dirs": ["native-bindings"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2", "-fPIC"],
      "direct_dependent_settings": {
        "include_dirs": ["native-bindings"]
      }
    },
    {
      "target_name": "ub-client-selftest",
      "type": "executable",
      "dependencies": ["ub-client"],
      "sources": ["native-bindings/ub-client-selftest.c"],
      "include_dirs": ["native-bindings"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "ub-context-selftest",
      "type": "executable",
      "sources": ["native-bindings/context-selftest.c"],
      "include_dirs": ["native-bindings"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "upcall-mount-in",
      "type": "executable",
      "sources": ["native-bindings/mount-in.c"],
      "include_dirs": ["native-bindings"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "upcall-mount-watch",
      "type": "executable",
      "sources": ["native-bindings/mount-watch.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "ub-mount-helper",
      "type": "executable",
      "dependencies": ["ub-client"],
      "sources": ["examples/c-mount-helper/ub-mount-helper.c"],
      "include_dirs": ["native-bindings"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "upcall-request-key",
      "type": "executable",
      "dependencies": ["ub-client"],
      "sources": ["native-bindings/upcall-request-key.c"],
      "include_dirs": ["native-bindings"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "upcall-request-key-selftest",
      "type": "executable",
      "dependencies": ["ub-client"],
      "sources": ["native-bindings/upcall-request-key-selftest.c"],
      "include_dirs": ["native-bindings"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    }
  ]
}
