#include "kernels.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

namespace trm {

// Process-wide: every JS thread that loads the addon (the server, its inference worker) shares them.
static std::atomic<int> g_threads{1};
static std::atomic<int> g_attention_threads{1};

void set_threads(int n) { g_threads = std::max(1, std::min(n, 64)); }
int threads() { return g_threads; }
void set_attention_threads(int n) { g_attention_threads = std::max(1, std::min(n, 64)); }
int attention_threads() { return g_attention_threads; }

// The BLAS thread count is one process-wide setting too, and attention drops it to 1 while it
// runs. With several JS threads in the kernels at once, the first attention in saves the count
// and the last one out restores it; a count set meanwhile is what gets restored.
static std::mutex g_blas_mu;
static int g_single_users = 0;
static int g_blas_saved = 0;

void set_blas_threads(int n) {
  std::lock_guard<std::mutex> lock(g_blas_mu);
  if (g_single_users > 0)
    g_blas_saved = n;
  else
    openblas_set_num_threads(n);
}

int blas_threads() {
  std::lock_guard<std::mutex> lock(g_blas_mu);
  return g_single_users > 0 ? g_blas_saved : openblas_get_num_threads();
}

namespace {
struct SingleThreadedBlas {
  SingleThreadedBlas() {
    std::lock_guard<std::mutex> lock(g_blas_mu);
    if (g_single_users++ == 0) {
      g_blas_saved = openblas_get_num_threads();
      openblas_set_num_threads(1);
    }
  }
  ~SingleThreadedBlas() {
    std::lock_guard<std::mutex> lock(g_blas_mu);
    if (--g_single_users == 0) openblas_set_num_threads(g_blas_saved);
  }
};
}  // namespace

// Runs fn(begin, end) over [0, n) split into contiguous chunks, one per thread. Work below
// `grain` items per thread runs inline: a thread start costs more than a small loop.
template <typename F>
static void parallel_for(int64_t n, int64_t grain, F fn) {
  int64_t parts = std::min<int64_t>(g_threads, grain > 0 ? n / grain : n);
  if (parts <= 1) {
    fn(int64_t(0), n);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(parts - 1);
  int64_t chunk = (n + parts - 1) / parts;
  for (int64_t p = 1; p < parts; p++) {
    int64_t b = p * chunk, e = std::min(n, b + chunk);
    if (b < e) pool.emplace_back([=] { fn(b, e); });
  }
  fn(int64_t(0), std::min(n, chunk));
  for (auto& t : pool) t.join();
}

void parallel_chunks(int64_t n, int64_t grain, void (*fn)(void*, int64_t, int64_t), void* ctx) {
  parallel_for(n, grain, [=](int64_t b, int64_t e) { fn(ctx, b, e); });
}

// Per JS thread: the trainer may ask for bf16 while the server's inference thread stays float32.
static thread_local bool t_bf16 = false;

bool set_matmul_bf16(bool on) { return t_bf16 = on && bf16_supported(); }
bool matmul_bf16() { return t_bf16; }

void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          int64_t strideA, const float* B, int64_t ldb, int64_t strideB, float beta, float* C, int64_t ldc,
          int64_t strideC, int64_t batch) {
  if (M == 0 || N == 0) return;
  // Below about a million multiply-adds, or with a narrow N, packing costs more than bf16 saves.
  const bool bf16 = t_bf16 && K >= 16 && N >= 16 && M * N * K >= (int64_t(1) << 20);
  for (int64_t i = 0; i < batch; i++) {
    if (bf16) {
      gemm_bf16(transA, transB, M, N, K, alpha, A + i * strideA, lda, B + i * strideB, ldb, beta, C + i * strideC,
                ldc);
      continue;
    }
    float* c = C + i * strideC;
    if (K == 0) {  // BLAS rejects K = 0 with lda = 0; the product is empty
      for (int64_t r = 0; r < M; r++)
        for (int64_t j = 0; j < N; j++) c[r * ldc + j] = beta == 0.f ? 0.f : beta * c[r * ldc + j];
      continue;
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, (int)M,
                (int)N, (int)K, alpha, A + i * strideA, (int)lda, B + i * strideB, (int)ldb, beta, c, (int)ldc);
  }
}

// The row loops (vec.inc: exp, double-lane sums, RoPE) are written on GCC vector types and compiled twice, 4-wide for the
// x86-64 baseline and 8-wide for AVX2+FMA; the CPU picks at load.
namespace base {
#define VEC_BYTES 16
#include "vec.inc"
#undef VEC_BYTES
}  // namespace base
#if defined(__x86_64__) && defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#define VEC_BYTES 32
#include "vec.inc"
#undef VEC_BYTES
#define ATTN_BYTES 32
#include "attn.inc"
#undef ATTN_BYTES
}  // namespace avx2
#pragma GCC pop_options
// TRM_FORGE_NATIVE_ISA=base|avx2 caps the paths below the CPU's best, so the fallbacks are tested too.
static int isa_cap() {
  const char* v = std::getenv("TRM_FORGE_NATIVE_ISA");
  if (v && std::strcmp(v, "base") == 0) return 0;
  if (v && std::strcmp(v, "avx2") == 0) return 1;
  return 2;
}
// __builtin_cpu_init first: in a static initializer the CPU model may not have been read yet.
static const bool kAvx2 = (__builtin_cpu_init(), isa_cap() >= 1 && __builtin_cpu_supports("avx2") &&
                                                     __builtin_cpu_supports("fma"));
#define VEC(fn) (kAvx2 ? avx2::fn : base::fn)
#define VEC_NAME (kAvx2 ? "avx2" : "base")
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
namespace avx512 {
#define ATTN_BYTES 64
#include "attn.inc"
#undef ATTN_BYTES
}  // namespace avx512
#pragma GCC pop_options
static const bool kAvx512 = (__builtin_cpu_init(), isa_cap() >= 2 && __builtin_cpu_supports("avx512f"));
#else
#define VEC(fn) base::fn
#define VEC_NAME "base"
static const bool kAvx2 = false;
static const bool kAvx512 = false;
namespace avx2 {
constexpr int64_t kV = 8;
static void scores(const float*, int64_t, int64_t, const float*, float*, int64_t) {}
static void weighted(const float*, int64_t, int64_t, const float*, int64_t, float*, int64_t, int64_t) {}
}  // namespace avx2
namespace avx512 {
constexpr int64_t kV = 16;
static void scores(const float*, int64_t, int64_t, const float*, float*, int64_t) {}
static void weighted(const float*, int64_t, int64_t, const float*, int64_t, float*, int64_t, int64_t) {}
}  // namespace avx512
#endif

const char* isa() { return kAvx512 ? "avx512" : VEC_NAME; }

bool bf16_supported() { return kAvx512 && bf16_cpu(); }

void rms_norm(const float* a, const float* b, float* y, float* r, int64_t rows, int64_t n, float eps) {
  parallel_for(rows, 4096 / std::max<int64_t>(1, n / 64) + 1, [=](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; row++) {
      float* yr = y + row * n;
      const double ss = VEC(add_sumsq)(a + row * n, b ? b + row * n : nullptr, yr, n);
      const float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
      r[row] = inv;
      VEC(scale_row)(yr, n, inv);
    }
  });
}

// y = x r, r = (mean(x^2) + eps)^-1/2: dx = r dy - r^3 x mean(dy x) = r (dy - y mean(dy y)).
void rms_norm_grad(const float* dy, const float* y, const float* r, float* dx, int64_t rows, int64_t n) {
  parallel_for(rows, 4096 / std::max<int64_t>(1, n / 64) + 1, [=](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; row++) {
      const float* yr = y + row * n;
      const float* gr = dy + row * n;
      float* dr = dx + row * n;
      const double dot = VEC(dot_f64)(gr, yr, n);
      const float inv = r[row];
      const float c = float(dot / double(n));
      for (int64_t j = 0; j < n; j++) dr[j] = inv * (gr[j] - yr[j] * c);
    }
  });
}

void silu_gate_mul(const float* gu, float* y, int64_t rows, int64_t w) {
  parallel_for(rows, 65536 / std::max<int64_t>(1, w) + 1, [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) VEC(silu_row)(gu + r * 2 * w, gu + r * 2 * w + w, y + r * w, w);
  });
}

void silu_gate_mul_grad(const float* dy, const float* gu, float* dgu, int64_t rows, int64_t w) {
  parallel_for(rows, 65536 / std::max<int64_t>(1, w) + 1, [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* g = gu + r * 2 * w;
      VEC(silu_grad_row)(dy + r * w, g, g + w, dgu + r * 2 * w, dgu + r * 2 * w + w, w);
    }
  });
}

// The (batch, head) pairs of attention are many small products: each worker thread takes a share
// of the pairs and runs them with a single-threaded BLAS, instead of every tiny sgemm paying for
// the BLAS's own thread hand-off. The BLAS thread count is restored afterwards.
template <typename F>
static void for_heads(int64_t pairs, F body) {
  int workers = int(std::min<int64_t>(std::max(1, g_attention_threads.load()), pairs));
  if (workers <= 1) {
    body(int64_t(0), pairs);
    return;
  }
  SingleThreadedBlas single;
  std::vector<std::thread> pool;
  int64_t chunk = (pairs + workers - 1) / workers;
  for (int w = 1; w < workers; w++) {
    int64_t b = w * chunk, e = std::min(pairs, b + chunk);
    if (b < e) pool.emplace_back([=] { body(b, e); });
  }
  body(0, std::min(pairs, chunk));
  for (auto& t : pool) t.join();
}

// The vector width attention's products run at in attn.inc: 16 lanes (AVX-512) or 8 (AVX2) where
// the head size is a multiple of it, else 0 and the BLAS runs them. With attn.inc the
// probabilities' rows are padded to a multiple of the width (zero keys beyond S).
static int64_t fused_lanes(int64_t hd) {
  if (kAvx512 && hd % avx512::kV == 0) return avx512::kV;
  if (kAvx2 && hd % avx2::kV == 0) return avx2::kV;
  return 0;
}
static int64_t probs_ld(int64_t S, int64_t hd) {
  const int64_t w = fused_lanes(hd);
  return w ? (S + w - 1) / w * w : S;
}

// P [S, ldp] = softmax(Q' K'^T) from the loaded heads q, k [S, hd]; kT [hd, ldp] is scratch.
static void probabilities(const float* q, const float* k, float* kT, float* p, int64_t S, int64_t hd, int64_t ldp) {
  if (const int64_t w = fused_lanes(hd)) {
    for (int64_t s = 0; s < S; s++)
      for (int64_t d = 0; d < hd; d++) kT[d * ldp + s] = k[s * hd + d];
    (w == avx512::kV ? avx512::scores : avx2::scores)(q, S, hd, kT, p, ldp);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)S, (int)S, (int)hd, 1.f, q, (int)hd, k, (int)hd, 0.f,
                p, (int)ldp);
  }
  for (int64_t r = 0; r < S; r++) VEC(softmax_row)(p + r * ldp, S);
}

// O [S, hd] (row stride ldo) = P [S, ldp] X, X rows at stride ldx.
static void weighted_sum(const float* p, int64_t ldp, int64_t S, const float* x, int64_t ldx, float* o, int64_t ldo,
                         int64_t hd) {
  if (const int64_t w = fused_lanes(hd)) {
    (w == avx512::kV ? avx512::weighted : avx2::weighted)(p, ldp, S, x, ldx, o, ldo, hd);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)S, (int)hd, (int)S, 1.f, p, (int)ldp, x, (int)ldx,
              0.f, o, (int)ldo);
}

// Per (batch, head): Q' = rope(q)/sqrt(hd), K' = rope(k), P = softmax(Q' K'^T), out_h = P V.
// V and out are read and written in place through their row strides (3D and D): no transposes.
void attention(const float* qkv, float* out, int64_t B, int64_t S, int64_t H, int64_t hd, const float* cos,
               const float* sin) {
  const int64_t D = H * hd, ld = 3 * D, ldp = probs_ld(S, hd);
  const float scale = float(1.0 / std::sqrt(double(hd)));
  for_heads(B * H, [=](int64_t p0, int64_t p1) {
    std::vector<float> q(S * hd), k(S * hd), kT(hd * ldp, 0.f), p(S * ldp);
    for (int64_t bh = p0; bh < p1; bh++) {
      const int64_t b = bh / H, h = bh % H;
      const float* base = qkv + b * S * ld;
      VEC(load_head)(base + h * hd, ld, q.data(), S, hd, cos, sin, scale);
      VEC(load_head)(base + D + h * hd, ld, k.data(), S, hd, cos, sin, 1.f);
      probabilities(q.data(), k.data(), kT.data(), p.data(), S, hd, ldp);
      weighted_sum(p.data(), ldp, S, base + 2 * D + h * hd, ld, out + b * S * D + h * hd, D, hd);
    }
  });
}

// dV = P^T dO; dP = dO V^T; dS = P (dP - rowsum(P dP)); dQ' = dS K'; dK' = dS^T Q'.
void attention_grad(const float* dout, const float* qkv, float* dqkv, int64_t B, int64_t S, int64_t H,
                    int64_t hd, const float* cos, const float* sin) {
  const int64_t D = H * hd, ld = 3 * D, ldp = probs_ld(S, hd);
  const float scale = float(1.0 / std::sqrt(double(hd)));
  for_heads(B * H, [=](int64_t p0, int64_t p1) {
    std::vector<float> q(S * hd), k(S * hd), kT(hd * ldp, 0.f), p(S * ldp), dp(S * ldp), dq(S * hd), dk(S * hd);
    for (int64_t bh = p0; bh < p1; bh++) {
      const int64_t b = bh / H, h = bh % H;
      const float* base = qkv + b * S * ld;
      float* dbase = dqkv + b * S * ld;
      const float* v = base + 2 * D + h * hd;
      const float* dOh = dout + b * S * D + h * hd;
      VEC(load_head)(base + h * hd, ld, q.data(), S, hd, cos, sin, scale);
      VEC(load_head)(base + D + h * hd, ld, k.data(), S, hd, cos, sin, 1.f);
      probabilities(q.data(), k.data(), kT.data(), p.data(), S, hd, ldp);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)S, (int)hd, (int)S, 1.f, p.data(), (int)ldp, dOh,
                  (int)D, 0.f, dbase + 2 * D + h * hd, (int)ld);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)S, (int)S, (int)hd, 1.f, dOh, (int)D, v, (int)ld,
                  0.f, dp.data(), (int)ldp);
      for (int64_t r = 0; r < S; r++) {
        float* pr = p.data() + r * ldp;
        float* gr = dp.data() + r * ldp;
        const float fd = float(VEC(dot_f64)(pr, gr, S));
        for (int64_t j = 0; j < S; j++) gr[j] = pr[j] * (gr[j] - fd);
      }
      weighted_sum(dp.data(), ldp, S, k.data(), hd, dq.data(), hd, hd);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)S, (int)hd, (int)S, 1.f, dp.data(), (int)ldp,
                  q.data(), (int)hd, 0.f, dk.data(), (int)hd);
      VEC(store_head_grad)(dq.data(), dbase + h * hd, ld, S, hd, cos, sin, scale);
      VEC(store_head_grad)(dk.data(), dbase + D + h * hd, ld, S, hd, cos, sin, 1.f);
    }
  });
}

static inline double stablemax_s(float x) { return x >= 0.f ? double(x) + 1.0 : 1.0 / (1.0 - double(x)); }

void log_stablemax(const float* x, float* y, int64_t rows, int64_t n) {
  parallel_for(rows, 4096 / std::max<int64_t>(1, n) + 1, [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* xr = x + r * n;
      double sum = 0;
      for (int64_t j = 0; j < n; j++) sum += stablemax_s(xr[j]);
      double ls = std::log(sum);
      for (int64_t j = 0; j < n; j++) y[r * n + j] = float(std::log(stablemax_s(xr[j])) - ls);
    }
  });
}

// d log s_j / dx_j = s'_j / s_j (1/s for x >= 0, s for x < 0 since s' = s^2 there);
// d log sum(s) / dx_j = s'_j / sum(s).
void log_stablemax_grad(const float* dy, const float* x, float* dx, int64_t rows, int64_t n) {
  parallel_for(rows, 4096 / std::max<int64_t>(1, n) + 1, [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* xr = x + r * n;
      const float* gr = dy + r * n;
      double sum = 0, gsum = 0;
      for (int64_t j = 0; j < n; j++) {
        sum += stablemax_s(xr[j]);
        gsum += gr[j];
      }
      for (int64_t j = 0; j < n; j++) {
        double s = stablemax_s(xr[j]);
        double ds = xr[j] >= 0.f ? 1.0 : s * s;
        dx[r * n + j] = float(gr[j] * ds / s - gsum * ds / sum);
      }
    }
  });
}

// Merges adjacent dimensions that are contiguous in every operand and drops size-1 ones, so the
// innermost loop is as long as possible. strides[j] lists each operand's strides.
static int collapse(int rank, const int64_t* shape, int nops, const int64_t* const* strides, int64_t* out_shape,
                    int64_t* out_strides /* [nops][kMaxRank] */) {
  int r = 0;
  for (int k = 0; k < rank; k++) {
    if (shape[k] == 1) continue;
    bool merge = r > 0;
    for (int j = 0; merge && j < nops; j++)
      merge = out_strides[j * kMaxRank + r - 1] == strides[j][k] * shape[k];
    if (merge) {
      out_shape[r - 1] *= shape[k];
      for (int j = 0; j < nops; j++) out_strides[j * kMaxRank + r - 1] = strides[j][k];
    } else {
      out_shape[r] = shape[k];
      for (int j = 0; j < nops; j++) out_strides[j * kMaxRank + r] = strides[j][k];
      r++;
    }
  }
  if (r == 0) {  // a single element
    out_shape[0] = 1;
    for (int j = 0; j < nops; j++) out_strides[j * kMaxRank] = 1;
    r = 1;
  }
  return r;
}

// Visits every index of the outer rank-1 dimensions (an odometer) over the outer range
// [o0, o1) of their flattened count, calling row(offsets) for each innermost row.
template <typename F>
static void for_rows(int rank, const int64_t* shape, int nops, const int64_t* strides, int64_t o0, int64_t o1,
                     F row) {
  int64_t idx[kMaxRank] = {0};
  int64_t off[4] = {0};
  // Start position: decompose o0 over the outer dims.
  int64_t rem = o0;
  for (int k = rank - 2; k >= 0; k--) {
    idx[k] = rem % shape[k];
    rem /= shape[k];
  }
  for (int j = 0; j < nops; j++) {
    off[j] = 0;
    for (int k = 0; k < rank - 1; k++) off[j] += idx[k] * strides[j * rank + k];
  }
  for (int64_t o = o0; o < o1; o++) {
    row(off);
    for (int k = rank - 2; k >= 0; k--) {
      idx[k]++;
      for (int j = 0; j < nops; j++) off[j] += strides[j * rank + k];
      if (idx[k] < shape[k]) break;
      for (int j = 0; j < nops; j++) off[j] -= shape[k] * strides[j * rank + k];
      idx[k] = 0;
    }
  }
}

// Runs f(offsets, i0, i1) over every innermost row of the collapsed box, in parallel: across rows
// when there are enough of them, else across chunks of the rows themselves (a same-shape add
// collapses to a single row of millions of elements). `grain` is the least work per task.
template <typename F>
static void for_blocks(int rank, const int64_t* shape, int nops, const int64_t* st, int64_t grain, F f) {
  const int64_t n = shape[rank - 1];
  int64_t outer = 1;
  for (int k = 0; k < rank - 1; k++) outer *= shape[k];
  const int64_t t = g_threads;
  const bool split = t > 1 && outer < 2 * t && n >= 2 * grain;
  const int64_t chunk = split ? std::max<int64_t>(grain, (n + t - 1) / t) : n;
  const int64_t chunks = (n + chunk - 1) / chunk;
  if (chunks <= 1) {
    parallel_for(outer, std::max<int64_t>(1, grain / std::max<int64_t>(1, n)), [&](int64_t o0, int64_t o1) {
      for_rows(rank, shape, nops, st, o0, o1, [&](const int64_t* off) { f(off, int64_t(0), n); });
    });
    return;
  }
  parallel_for(outer * chunks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const int64_t row = t / chunks, c = t % chunks;
      for_rows(rank, shape, nops, st, row, row + 1,
               [&](const int64_t* off) { f(off, c * chunk, std::min(n, (c + 1) * chunk)); });
    }
  });
}

template <typename E>
static void copy_typed(const E* src, E* dst, int rank, const int64_t* shape, const int64_t* st) {
  const int64_t ss = st[rank - 1], ds = st[2 * rank - 1];
  for_blocks(rank, shape, 2, st, 1 << 16, [&](const int64_t* off, int64_t i0, int64_t i1) {
    const E* s = src + off[0];
    E* d = dst + off[1];
    if (ss == 1 && ds == 1) {
      std::memcpy(d + i0, s + i0, size_t(i1 - i0) * sizeof(E));
    } else {
      for (int64_t i = i0; i < i1; i++) d[i * ds] = s[i * ss];
    }
  });
}

void strided_copy(const void* src, void* dst, int esize, int rank, const int64_t* shape, const int64_t* src_stride,
                  const int64_t* dst_stride) {
  for (int k = 0; k < rank; k++)
    if (shape[k] == 0) return;
  int64_t cshape[kMaxRank], cst[2 * kMaxRank];
  const int64_t* strides[2] = {src_stride, dst_stride};
  int r = collapse(rank, shape, 2, strides, cshape, cst);
  // collapse() leaves operand j's strides at j * kMaxRank; for_rows wants them at j * r.
  int64_t packed[2 * kMaxRank];
  for (int j = 0; j < 2; j++)
    for (int k = 0; k < r; k++) packed[j * r + k] = cst[j * kMaxRank + k];
  if (esize == 4)
    copy_typed(static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst), r, cshape, packed);
  else
    copy_typed(static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst), r, cshape, packed);
}

void unary(int op, const float* x, float* y, int64_t n) {
  parallel_for(n, 1 << 16, [=](int64_t i0, int64_t i1) {
    if (op == 0)
      for (int64_t i = i0; i < i1; i++) y[i] = std::sqrt(x[i]);
    else
      for (int64_t i = i0; i < i1; i++) y[i] = x[i] * x[i];
  });
}

template <int OP>
static inline float apply(float x, float y) {
  if (OP == kAdd) return x + y;
  if (OP == kSub) return x - y;
  if (OP == kMul) return x * y;
  return x / y;
}

template <int OP>
static void binary_typed(const float* a, const float* b, float* out, int rank, const int64_t* shape,
                         const int64_t* st) {
  const int64_t as = st[rank - 1], bs = st[2 * rank - 1];
  for_blocks(rank, shape, 3, st, 1 << 16, [&](const int64_t* off, int64_t i0, int64_t i1) {
    const float* x = a + off[0];
    const float* y = b + off[1];
    float* z = out + off[2];
    // The common layouts get loops the compiler vectorises.
    if (as == 1 && bs == 1) {
      for (int64_t i = i0; i < i1; i++) z[i] = apply<OP>(x[i], y[i]);
    } else if (as == 1 && bs == 0) {
      const float c = y[0];
      for (int64_t i = i0; i < i1; i++) z[i] = apply<OP>(x[i], c);
    } else if (as == 0 && bs == 1) {
      const float c = x[0];
      for (int64_t i = i0; i < i1; i++) z[i] = apply<OP>(c, y[i]);
    } else {
      for (int64_t i = i0; i < i1; i++) z[i] = apply<OP>(x[i * as], y[i * bs]);
    }
  });
}

void binary(int op, const float* a, const int64_t* a_stride, const float* b, const int64_t* b_stride, float* out,
            int rank, const int64_t* shape) {
  int64_t size = 1;
  for (int k = 0; k < rank; k++) size *= shape[k];
  if (size == 0) return;
  // out is contiguous.
  int64_t out_stride[kMaxRank];
  int64_t s = 1;
  for (int k = rank - 1; k >= 0; k--) {
    out_stride[k] = s;
    s *= shape[k];
  }
  int64_t cshape[kMaxRank], cst[3 * kMaxRank], packed[3 * kMaxRank];
  const int64_t* strides[3] = {a_stride, b_stride, out_stride};
  int r = collapse(rank, shape, 3, strides, cshape, cst);
  for (int j = 0; j < 3; j++)
    for (int k = 0; k < r; k++) packed[j * r + k] = cst[j * kMaxRank + k];
  switch (op) {
    case kAdd: binary_typed<kAdd>(a, b, out, r, cshape, packed); break;
    case kSub: binary_typed<kSub>(a, b, out, r, cshape, packed); break;
    case kMul: binary_typed<kMul>(a, b, out, r, cshape, packed); break;
    default: binary_typed<kDiv>(a, b, out, r, cshape, packed); break;
  }
}

}  // namespace trm
