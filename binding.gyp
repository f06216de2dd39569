{
  "targets": [
    {
      "target_name": "upcall-spawner",
      "type": "executable",
      "sources": ["native-bindings/spawner.c"],
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
      "target_name": "ub-mount-helper",
      "type": "executable",
      "dependencies": ["ub-client"],
      "sources": ["examples/c-mount-helper/ub-mount-helper.c"],
      "include_dirs": ["native-bindings"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    }
  ]
}
