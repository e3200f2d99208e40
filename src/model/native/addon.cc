// N-API glue for kernels.cc. Every entry point checks its arguments (types and that each buffer
// covers what the kernel touches) and throws a JS error instead of reading out of bounds.
#include <cblas.h>
#include <node_api.h>

#include <cstdint>
#include <string>

#include "kernels.h"

namespace {

struct Args {
  napi_env env;
  napi_value argv[24];
  size_t argc = 24;
  bool failed = false;

  Args(napi_env e, napi_callback_info info, size_t expected) : env(e) {
    napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
    if (argc < expected) fail(("expected " + std::to_string(expected) + " arguments").c_str());
  }

  void fail(const char* msg) {
    if (!failed) napi_throw_type_error(env, nullptr, msg);
    failed = true;
  }

  void range(const char* msg) {
    if (!failed) napi_throw_range_error(env, nullptr, msg);
    failed = true;
  }

  int64_t i64(size_t i, const char* name) {
    int64_t v = 0;
    if (failed) return 0;
    if (napi_get_value_int64(env, argv[i], &v) != napi_ok || v < 0) fail((std::string(name) + ": want a non-negative integer").c_str());
    return v;
  }

  double f64(size_t i, const char* name) {
    double v = 0;
    if (failed) return 0;
    if (napi_get_value_double(env, argv[i], &v) != napi_ok) fail((std::string(name) + ": want a number").c_str());
    return v;
  }

  bool flag(size_t i, const char* name) {
    bool v = false;
    if (failed) return false;
    if (napi_get_value_bool(env, argv[i], &v) != napi_ok) fail((std::string(name) + ": want a boolean").c_str());
    return v;
  }

  // A Float32Array with at least `need` elements; null/undefined is allowed when `optional`.
  float* f32(size_t i, const char* name, int64_t need, bool optional = false) {
    if (failed) return nullptr;
    napi_valuetype t;
    napi_typeof(env, argv[i], &t);
    if (optional && (t == napi_null || t == napi_undefined)) return nullptr;
    bool is = false;
    napi_is_typedarray(env, argv[i], &is);
    napi_typedarray_type type;
    size_t len = 0;
    void* data = nullptr;
    if (!is || napi_get_typedarray_info(env, argv[i], &type, &len, &data, nullptr, nullptr) != napi_ok ||
        type != napi_float32_array) {
      fail((std::string(name) + ": want a Float32Array").c_str());
      return nullptr;
    }
    if (int64_t(len) < need) {
      range((std::string(name) + ": buffer holds " + std::to_string(len) + " floats, the kernel needs " +
             std::to_string(need))
                .c_str());
      return nullptr;
    }
    return static_cast<float*>(data);
  }
};

napi_value undef(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// Elements a strided operand spans: the last item's last row plus its width.
int64_t extent(int64_t rows, int64_t cols, int64_t ld, int64_t stride, int64_t batch) {
  if (rows == 0 || cols == 0 || batch == 0) return 0;
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

// gemm(transA, transB, M, N, K, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc, strideC, batch)
napi_value Gemm(napi_env env, napi_callback_info info) {
  Args a(env, info, 17);
  bool ta = a.flag(0, "transA"), tb = a.flag(1, "transB");
  int64_t M = a.i64(2, "M"), N = a.i64(3, "N"), K = a.i64(4, "K");
  float alpha = float(a.f64(5, "alpha"));
  int64_t lda = a.i64(7, "lda"), sA = a.i64(8, "strideA");
  int64_t ldb = a.i64(10, "ldb"), sB = a.i64(11, "strideB");
  float beta = float(a.f64(12, "beta"));
  int64_t ldc = a.i64(14, "ldc"), sC = a.i64(15, "strideC"), batch = a.i64(16, "batch");
  if (a.failed) return nullptr;
  int64_t aRows = ta ? K : M, aCols = ta ? M : K, bRows = tb ? N : K, bCols = tb ? K : N;
  if ((K > 0 && (lda < aCols || ldb < bCols)) || ldc < N || lda < 1 || ldb < 1 || ldc < 1 ||
      M > INT32_MAX || N > INT32_MAX || K > INT32_MAX) {
    a.range("gemm: leading dimension smaller than a row, or a size beyond int32");
    return nullptr;
  }
  const float* A = a.f32(6, "A", extent(aRows, aCols, lda, sA, batch));
  const float* B = a.f32(9, "B", extent(bRows, bCols, ldb, sB, batch));
  float* C = a.f32(13, "C", extent(M, N, ldc, sC, batch));
  if (a.failed) return nullptr;
  trm::gemm(ta, tb, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
  return undef(env);
}

// rmsNorm(a, b | null, y, r, rows, n, eps): y = rmsnorm(a (+ b)), r = the per-row scale
napi_value RmsNorm(napi_env env, napi_callback_info info) {
  Args a(env, info, 7);
  int64_t rows = a.i64(4, "rows"), n = a.i64(5, "n");
  float eps = float(a.f64(6, "eps"));
  const float* x = a.f32(0, "a", rows * n);
  const float* b = a.f32(1, "b", rows * n, true);
  float* y = a.f32(2, "y", rows * n);
  float* r = a.f32(3, "r", rows);
  if (a.failed) return nullptr;
  trm::rms_norm(x, b, y, r, rows, n, eps);
  return undef(env);
}

// rmsNormGrad(dy, y, r, dx, rows, n)
napi_value RmsNormGrad(napi_env env, napi_callback_info info) {
  Args a(env, info, 6);
  int64_t rows = a.i64(4, "rows"), n = a.i64(5, "n");
  const float* dy = a.f32(0, "dy", rows * n);
  const float* y = a.f32(1, "y", rows * n);
  const float* r = a.f32(2, "r", rows);
  float* dx = a.f32(3, "dx", rows * n);
  if (a.failed) return nullptr;
  trm::rms_norm_grad(dy, y, r, dx, rows, n);
  return undef(env);
}

// siluGateMul(gu, y, rows, w)
napi_value SiluGateMul(napi_env env, napi_callback_info info) {
  Args a(env, info, 4);
  int64_t rows = a.i64(2, "rows"), w = a.i64(3, "w");
  const float* gu = a.f32(0, "gu", rows * 2 * w);
  float* y = a.f32(1, "y", rows * w);
  if (a.failed) return nullptr;
  trm::silu_gate_mul(gu, y, rows, w);
  return undef(env);
}

// siluGateMulGrad(dy, gu, dgu, rows, w)
napi_value SiluGateMulGrad(napi_env env, napi_callback_info info) {
  Args a(env, info, 5);
  int64_t rows = a.i64(3, "rows"), w = a.i64(4, "w");
  const float* dy = a.f32(0, "dy", rows * w);
  const float* gu = a.f32(1, "gu", rows * 2 * w);
  float* dgu = a.f32(2, "dgu", rows * 2 * w);
  if (a.failed) return nullptr;
  trm::silu_gate_mul_grad(dy, gu, dgu, rows, w);
  return undef(env);
}

bool attention_dims(Args& a, size_t first, int64_t* B, int64_t* S, int64_t* H, int64_t* hd) {
  *B = a.i64(first, "B");
  *S = a.i64(first + 1, "S");
  *H = a.i64(first + 2, "H");
  *hd = a.i64(first + 3, "hd");
  if (a.failed) return false;
  if (*S > INT32_MAX || *H * *hd * 3 > INT32_MAX) {
    a.range("attention: size beyond int32");
    return false;
  }
  return true;
}

// attention(qkv, out, B, S, H, hd, cos | null, sin | null)
napi_value Attention(napi_env env, napi_callback_info info) {
  Args a(env, info, 8);
  int64_t B, S, H, hd;
  if (!attention_dims(a, 2, &B, &S, &H, &hd)) return nullptr;
  const float* qkv = a.f32(0, "qkv", B * S * 3 * H * hd);
  float* out = a.f32(1, "out", B * S * H * hd);
  const float* cos = a.f32(6, "cos", S * hd, true);
  const float* sin = a.f32(7, "sin", S * hd, true);
  if (a.failed) return nullptr;
  if ((cos == nullptr) != (sin == nullptr) || (cos && hd % 2)) {
    a.fail("attention: RoPE needs both cos and sin and an even head size");
    return nullptr;
  }
  trm::attention(qkv, out, B, S, H, hd, cos, sin);
  return undef(env);
}

// attentionGrad(dout, qkv, dqkv, B, S, H, hd, cos | null, sin | null)
napi_value AttentionGrad(napi_env env, napi_callback_info info) {
  Args a(env, info, 9);
  int64_t B, S, H, hd;
  if (!attention_dims(a, 3, &B, &S, &H, &hd)) return nullptr;
  const float* dout = a.f32(0, "dout", B * S * H * hd);
  const float* qkv = a.f32(1, "qkv", B * S * 3 * H * hd);
  float* dqkv = a.f32(2, "dqkv", B * S * 3 * H * hd);
  const float* cos = a.f32(7, "cos", S * hd, true);
  const float* sin = a.f32(8, "sin", S * hd, true);
  if (a.failed) return nullptr;
  if ((cos == nullptr) != (sin == nullptr) || (cos && hd % 2)) {
    a.fail("attentionGrad: RoPE needs both cos and sin and an even head size");
    return nullptr;
  }
  trm::attention_grad(dout, qkv, dqkv, B, S, H, hd, cos, sin);
  return undef(env);
}

// logStablemax(x, y, rows, n)
napi_value LogStablemax(napi_env env, napi_callback_info info) {
  Args a(env, info, 4);
  int64_t rows = a.i64(2, "rows"), n = a.i64(3, "n");
  const float* x = a.f32(0, "x", rows * n);
  float* y = a.f32(1, "y", rows * n);
  if (a.failed) return nullptr;
  trm::log_stablemax(x, y, rows, n);
  return undef(env);
}

// logStablemaxGrad(dy, x, dx, rows, n)
napi_value LogStablemaxGrad(napi_env env, napi_callback_info info) {
  Args a(env, info, 5);
  int64_t rows = a.i64(3, "rows"), n = a.i64(4, "n");
  const float* dy = a.f32(0, "dy", rows * n);
  const float* x = a.f32(1, "x", rows * n);
  float* dx = a.f32(2, "dx", rows * n);
  if (a.failed) return nullptr;
  trm::log_stablemax_grad(dy, x, dx, rows, n);
  return undef(env);
}

// Reads a JS array of at most kMaxRank non-negative integers.
int dims(Args& a, size_t i, const char* name, int64_t* out) {
  if (a.failed) return 0;
  bool is = false;
  napi_is_array(a.env, a.argv[i], &is);
  uint32_t n = 0;
  if (is) napi_get_array_length(a.env, a.argv[i], &n);
  if (!is || n > uint32_t(trm::kMaxRank)) {
    a.fail((std::string(name) + ": want an array of at most 16 integers").c_str());
    return 0;
  }
  for (uint32_t k = 0; k < n; k++) {
    napi_value v;
    napi_get_element(a.env, a.argv[i], k, &v);
    if (napi_get_value_int64(a.env, v, &out[k]) != napi_ok || out[k] < 0) {
      a.fail((std::string(name) + ": want non-negative integers").c_str());
      return 0;
    }
  }
  return int(n);
}

// Any typed array: its data, length in elements and element size in bytes.
void* typed(Args& a, size_t i, const char* name, size_t* len, int* esize) {
  if (a.failed) return nullptr;
  bool is = false;
  napi_is_typedarray(a.env, a.argv[i], &is);
  napi_typedarray_type type;
  void* data = nullptr;
  if (!is || napi_get_typedarray_info(a.env, a.argv[i], &type, len, &data, nullptr, nullptr) != napi_ok) {
    a.fail((std::string(name) + ": want a typed array").c_str());
    return nullptr;
  }
  switch (type) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array: *esize = 1; break;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array: *esize = 4; break;
    default: a.fail((std::string(name) + ": want 1- or 4-byte elements").c_str()); return nullptr;
  }
  return data;
}

// One past the furthest element a strided box touches from `offset`.
int64_t reach(int rank, const int64_t* shape, const int64_t* stride, int64_t offset) {
  int64_t far = offset;
  for (int k = 0; k < rank; k++) {
    if (shape[k] == 0) return 0;
    far += (shape[k] - 1) * stride[k];
  }
  return far + 1;
}

// stridedCopy(src, srcOffset, dst, dstOffset, shape, srcStrides, dstStrides)
napi_value StridedCopy(napi_env env, napi_callback_info info) {
  Args a(env, info, 7);
  size_t slen = 0, dlen = 0;
  int ses = 0, des = 0;
  void* src = typed(a, 0, "src", &slen, &ses);
  void* dst = typed(a, 2, "dst", &dlen, &des);
  int64_t soff = a.i64(1, "srcOffset"), doff = a.i64(3, "dstOffset");
  int64_t shape[trm::kMaxRank], ss[trm::kMaxRank], ds[trm::kMaxRank];
  int r = dims(a, 4, "shape", shape);
  int r1 = dims(a, 5, "srcStrides", ss);
  int r2 = dims(a, 6, "dstStrides", ds);
  if (a.failed) return nullptr;
  if (r1 != r || r2 != r || ses != des) {
    a.fail("stridedCopy: shape and strides differ in rank, or the arrays in element size");
    return nullptr;
  }
  if (reach(r, shape, ss, soff) > int64_t(slen) || reach(r, shape, ds, doff) > int64_t(dlen)) {
    a.range("stridedCopy: the box reaches past the end of an array");
    return nullptr;
  }
  trm::strided_copy(static_cast<char*>(src) + soff * ses, static_cast<char*>(dst) + doff * des, ses, r, shape, ss,
                    ds);
  return undef(env);
}

// unary(op, x, y, n): op 0 sqrt, 1 square.
napi_value Unary(napi_env env, napi_callback_info info) {
  Args a(env, info, 4);
  int64_t op = a.i64(0, "op"), n = a.i64(3, "n");
  const float* x = a.f32(1, "x", n);
  float* y = a.f32(2, "y", n);
  if (a.failed) return nullptr;
  if (op > 1) {
    a.fail("unary: op must be 0 (sqrt) or 1 (square)");
    return nullptr;
  }
  trm::unary(int(op), x, y, n);
  return undef(env);
}

// binary(op, a, aStrides, b, bStrides, out, shape): op 0 add, 1 sub, 2 mul, 3 div.
napi_value Binary(napi_env env, napi_callback_info info) {
  Args a(env, info, 7);
  int64_t op = a.i64(0, "op");
  int64_t shape[trm::kMaxRank], as[trm::kMaxRank], bs[trm::kMaxRank];
  int r = dims(a, 6, "shape", shape);
  int r1 = dims(a, 2, "aStrides", as);
  int r2 = dims(a, 4, "bStrides", bs);
  if (a.failed) return nullptr;
  if (op > 3 || r1 != r || r2 != r) {
    a.fail("binary: op must be 0..3 and the strides must match the shape's rank");
    return nullptr;
  }
  int64_t size = 1;
  for (int k = 0; k < r; k++) size *= shape[k];
  const float* x = a.f32(1, "a", reach(r, shape, as, 0));
  const float* y = a.f32(3, "b", reach(r, shape, bs, 0));
  float* out = a.f32(5, "out", size);
  if (a.failed) return nullptr;
  trm::binary(int(op), x, as, y, bs, out, r, shape);
  return undef(env);
}

// setThreads(kernelThreads, blasThreads, attentionThreads): 0 leaves a setting as it is.
napi_value SetThreads(napi_env env, napi_callback_info info) {
  Args a(env, info, 3);
  int64_t kt = a.i64(0, "kernelThreads"), bt = a.i64(1, "blasThreads"), at = a.i64(2, "attentionThreads");
  if (a.failed) return nullptr;
  if (kt > 0) trm::set_threads(int(kt));
  if (bt > 0) trm::set_blas_threads(int(bt));
  if (at > 0) trm::set_attention_threads(int(at));
  return undef(env);
}

// setMatmulBf16(on) -> whether this JS thread's products now run in bf16 (false without AVX-512 BF16)
napi_value SetMatmulBf16(napi_env env, napi_callback_info info) {
  Args a(env, info, 1);
  bool on = a.flag(0, "on");
  if (a.failed) return nullptr;
  napi_value v;
  napi_get_boolean(env, trm::set_matmul_bf16(on), &v);
  return v;
}

void set_prop(napi_env env, napi_value obj, const char* key, napi_value v) {
  napi_set_named_property(env, obj, key, v);
}

// info() -> { blasConfig, blasCore, blasThreads, blasProcs, blasParallel, kernelThreads, attentionThreads, isa,
//             bf16 (the CPU can), matmulBf16 (this thread does) }
napi_value Info(napi_env env, napi_callback_info) {
  napi_value obj, v;
  napi_create_object(env, &obj);
  napi_create_string_utf8(env, openblas_get_config(), NAPI_AUTO_LENGTH, &v);
  set_prop(env, obj, "blasConfig", v);
  napi_create_string_utf8(env, openblas_get_corename(), NAPI_AUTO_LENGTH, &v);
  set_prop(env, obj, "blasCore", v);
  napi_create_int32(env, trm::blas_threads(), &v);
  set_prop(env, obj, "blasThreads", v);
  napi_create_int32(env, openblas_get_num_procs(), &v);
  set_prop(env, obj, "blasProcs", v);
  // 0 = sequential, 1 = pthreads, 2 = OpenMP
  napi_create_int32(env, openblas_get_parallel(), &v);
  set_prop(env, obj, "blasParallel", v);
  napi_create_int32(env, trm::threads(), &v);
  set_prop(env, obj, "kernelThreads", v);
  napi_create_int32(env, trm::attention_threads(), &v);
  set_prop(env, obj, "attentionThreads", v);
  napi_create_string_utf8(env, trm::isa(), NAPI_AUTO_LENGTH, &v);
  set_prop(env, obj, "isa", v);
  napi_get_boolean(env, trm::bf16_supported(), &v);
  set_prop(env, obj, "bf16", v);
  napi_get_boolean(env, trm::matmul_bf16(), &v);
  set_prop(env, obj, "matmulBf16", v);
  return obj;
}

}  // namespace

NAPI_MODULE_INIT() {
  // The kernels' own threads follow the BLAS's (OPENBLAS_NUM_THREADS, else the processors): a JS
  // thread calls one kernel at a time, so the two never run at once for it. Context-aware
  // (NAPI_MODULE_INIT, no JS state kept between calls): it loads in every worker thread.
  trm::set_threads(trm::blas_threads());
  trm::set_attention_threads(trm::blas_threads());
  struct {
    const char* name;
    napi_callback fn;
  } fns[] = {{"gemm", Gemm},
             {"rmsNorm", RmsNorm},
             {"rmsNormGrad", RmsNormGrad},
             {"siluGateMul", SiluGateMul},
             {"siluGateMulGrad", SiluGateMulGrad},
             {"attention", Attention},
             {"attentionGrad", AttentionGrad},
             {"logStablemax", LogStablemax},
             {"logStablemaxGrad", LogStablemaxGrad},
             {"stridedCopy", StridedCopy},
             {"binary", Binary},
             {"unary", Unary},
             {"setThreads", SetThreads},
             {"setMatmulBf16", SetMatmulBf16},
             {"info", Info}};
  for (auto& f : fns) {
    napi_value v;
    napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.fn, nullptr, &v);
    napi_set_named_property(env, exports, f.name, v);
  }
  return exports;
}
