{
  "targets": [
    {
      "target_name": "upcall-spawner",
      "type": "executable",
      "sources": ["native-bindings/spawner.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    }
  ]
}
