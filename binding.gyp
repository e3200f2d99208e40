{
  "targets": [
    {
      "target_name": "trm_native",
      "sources": ["src/model/native/addon.cc", "src/model/native/kernels.cc", "src/model/native/bf16.cc"],
      "cflags_cc": ["-O3", "-std=c++17", "-fno-math-errno"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lopenblas", "-lpthread"]
    }
  ]
}
