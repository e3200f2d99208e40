// The opt-in bfloat16 matrix product: both operands rounded to bf16 (nearest even), products summed
// in float32 by AVX-512 BF16's dot instruction, which does two multiply-adds per float32 lane.
// Debian's OpenBLAS has no sbgemm, so this is our own, blocked the usual way: a packed panel of B
// (KC x NR) stays in L1 while packed panels of A (MR x KC) stream past it from L2.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && __GNUC__ >= 10
#include <immintrin.h>
#endif

namespace trm {

#if defined(__x86_64__) && defined(__GNUC__) && __GNUC__ >= 10
namespace {

constexpr int64_t MR = 12;   // rows of a micro-tile: 12 x 2 accumulators + 2 B vectors + 1 broadcast of 32 registers
constexpr int64_t NR = 32;   // columns: two vectors of 16 float32
constexpr int64_t KC = 256;  // bf16 pairs per K block: a B panel is 256 x 32 x 4 B = 32 KiB, in L1
constexpr int64_t MC = 96;   // rows per A block: 96 x 256 x 4 B = 96 KiB, in L2

struct FreeDeleter {
  void operator()(uint32_t* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<uint32_t[], FreeDeleter>;

Buffer aligned_words(int64_t n) {
  size_t bytes = (size_t(std::max<int64_t>(n, 16)) * 4 + 63) / 64 * 64;
  auto* p = static_cast<uint32_t*>(std::aligned_alloc(64, bytes));
  if (!p) throw std::bad_alloc();
  return Buffer(p);
}

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")

inline __mmask16 lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// out[j] = bf16(r0[j]) | bf16(r1[j]) << 16 for j < n (n <= 16): a column pair of two rows. r1 may be null.
inline void pair_two_rows(const float* r0, const float* r1, int64_t n, uint32_t* out) {
  const __mmask16 m = lanes(n);
  const __m512 x0 = _mm512_maskz_loadu_ps(m, r0);
  const __m512 x1 = r1 ? _mm512_maskz_loadu_ps(m, r1) : _mm512_setzero_ps();
  // words 0..15 are x0's, 16..31 x1's; interleave them into (x0[j], x1[j]) pairs
  const __m512i h = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                       21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  _mm512_mask_storeu_epi32(out, m, _mm512_permutexvar_epi16(idx, h));
}

// out[p] = bf16(r[2p]) | bf16(r[2p+1]) << 16 for the ceil(k / 2) pairs of one contiguous row; an odd
// k's last pair has a zero high half.
inline void pair_one_row(const float* r, int64_t k, uint32_t* out) {
  int64_t j = 0;
  for (; j < k; j += 32) {
    const int64_t left = k - j;
    const __m512 lo = _mm512_maskz_loadu_ps(lanes(left), r + j);
    const __m512 hi = left > 16 ? _mm512_maskz_loadu_ps(lanes(left - 16), r + j + 16) : _mm512_setzero_ps();
    const __m512i h = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
    _mm512_mask_storeu_epi32(out + j / 2, lanes((left + 1) / 2), h);
  }
}

// The operand op(X)[r][k] (r < rows, k < K) as pairs along k: where pairs run along X's rows the
// two source rows are read side by side; where they run along a row (the transposed case) each row
// is paired in a scratch line and scattered. Packed layout: panels of W rows, [panel][kp][W].
template <int64_t W>
void pack(const float* X, int64_t ld, bool kMajor, int64_t r0, int64_t rows, int64_t k0, int64_t kc, int64_t K,
          uint32_t* out, uint32_t* line) {
  const int64_t kEnd = std::min(K, 2 * (k0 + kc));
  for (int64_t p0 = 0; p0 < rows; p0 += W) {
    const int64_t w = std::min(W, rows - p0);
    uint32_t* panel = out + (p0 / W) * kc * W;
    if (kMajor) {  // op(X)[r][k] = X[k * ld + r]: rows 2kp and 2kp + 1 of X, columns r
      for (int64_t kp = 0; kp < kc; kp++) {
        const int64_t k = 2 * (k0 + kp);
        const float* a = X + k * ld + r0 + p0;
        const float* b = k + 1 < kEnd ? a + ld : nullptr;
        for (int64_t c = 0; c < W; c += 16) {
          if (c < w) pair_two_rows(a + c, b ? b + c : nullptr, std::min<int64_t>(16, w - c), panel + kp * W + c);
          const int64_t z0 = std::max(c, w), z1 = std::min(c + 16, W);
          for (int64_t z = z0; z < z1; z++) panel[kp * W + z] = 0;
        }
      }
    } else {  // op(X)[r][k] = X[r * ld + k]: pairs contiguous in row r
      for (int64_t i = 0; i < W; i++) {
        if (i < w) {
          pair_one_row(X + (r0 + p0 + i) * ld + 2 * k0, kEnd - 2 * k0, line);
          for (int64_t kp = 0; kp < kc; kp++) panel[kp * W + i] = line[kp];
        } else {
          for (int64_t kp = 0; kp < kc; kp++) panel[kp * W + i] = 0;
        }
      }
    }
  }
}

// C[0:mr, 0:nr] (=|+=) alpha * A_panel @ B_panel over kc pairs; full tiles are computed and the edge
// stored under a mask. first: C = alpha AB + beta C (beta 0 never reads C); else C += alpha AB.
void micro(int64_t kc, const uint32_t* a, const uint32_t* b, float* c, int64_t ldc, int64_t mr, int64_t nr,
           float alpha, float beta, bool first) {
  __m512 acc[MR][2];
#pragma GCC unroll 12
  for (int64_t r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t kp = 0; kp < kc; kp++) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(b + 16);
#pragma GCC unroll 12
    for (int64_t r = 0; r < MR; r++) {
      const __m512bh x = (__m512bh)_mm512_set1_epi32(int(a[r]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
    }
    a += MR;
    b += NR;
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const __mmask16 m0 = lanes(nr), m1 = lanes(nr - 16 > 0 ? nr - 16 : 0);
  for (int64_t r = 0; r < mr; r++) {
    float* row = c + r * ldc;
    for (int h = 0; h < 2; h++) {
      const __mmask16 m = h ? m1 : m0;
      if (!m) continue;
      __m512 v = _mm512_mul_ps(acc[r][h], va);
      if (!first)
        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, row + 16 * h));
      else if (beta != 0.f)
        v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, row + 16 * h), v);
      _mm512_mask_storeu_ps(row + 16 * h, m, v);
    }
  }
}

#pragma GCC pop_options

struct Job {
  bool transA;
  int64_t M, N, K, Kp, lda, ldc;
  float alpha, beta;
  const float* A;
  const uint32_t* bp;  // B packed whole: [N / NR panels][Kp][NR]
  float* C;
};

// Rows [p0 * MR, p1 * MR) of C: for each K block, A blocks of MC rows are packed and multiplied by
// every B panel.
void rows_job(void* ctx, int64_t p0, int64_t p1) {
  const Job& j = *static_cast<const Job*>(ctx);
  const int64_t m0 = p0 * MR, m1 = std::min(j.M, p1 * MR);
  Buffer ap = aligned_words(MC * KC), line = aligned_words(KC + 16);
  for (int64_t pc = 0; pc < j.Kp; pc += KC) {
    const int64_t kc = std::min(KC, j.Kp - pc);
    for (int64_t ic = m0; ic < m1; ic += MC) {
      const int64_t mc = std::min(MC, m1 - ic);
      pack<MR>(j.A, j.lda, j.transA, ic, mc, pc, kc, j.K, ap.get(), line.get());
      for (int64_t jr = 0; jr < j.N; jr += NR) {
        const uint32_t* b = j.bp + (jr / NR) * j.Kp * NR + pc * NR;
        for (int64_t ir = 0; ir < mc; ir += MR)
          micro(kc, ap.get() + (ir / MR) * kc * MR, b, j.C + (ic + ir) * j.ldc + jr, j.ldc,
                std::min(MR, mc - ir), std::min(NR, j.N - jr), j.alpha, j.beta, pc == 0);
      }
    }
  }
}

struct PackB {
  const float* B;
  int64_t ldb, N, K, Kp;
  bool kMajor;
  uint32_t* out;
};

void pack_b_job(void* ctx, int64_t q0, int64_t q1) {
  const PackB& p = *static_cast<const PackB*>(ctx);
  Buffer line = aligned_words(p.Kp + 16);
  for (int64_t q = q0; q < q1; q++) {
    const int64_t n0 = q * NR;
    pack<NR>(p.B, p.ldb, p.kMajor, n0, std::min(NR, p.N - n0), 0, p.Kp, p.K, p.out + q * p.Kp * NR, line.get());
  }
}

}  // namespace

static const bool kBf16 = (__builtin_cpu_init(), __builtin_cpu_supports("avx512bf16") &&
                                                     __builtin_cpu_supports("avx512bw"));

bool bf16_cpu() { return kBf16; }

void gemm_bf16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t Kp = (K + 1) / 2, panels = (N + NR - 1) / NR;
  // One packed B per calling thread, kept between calls: re-allocating megabytes each product
  // costs page faults comparable to the product itself. Above 64 MiB it is not kept.
  thread_local Buffer bp;
  thread_local int64_t bpWords = 0;
  const int64_t words = panels * Kp * NR;
  if (words > bpWords) {
    bp.reset();
    bpWords = 0;  // stays so if the allocation below throws
    bp = aligned_words(words);
    bpWords = words;
  }
  // op(B)[k][n]: pairs along k run down B's rows unless B is transposed.
  PackB pb{B, ldb, N, K, Kp, !transB, bp.get()};
  parallel_chunks(panels, 1, pack_b_job, &pb);
  Job job{transA, M, N, K, Kp, lda, ldc, alpha, beta, A, bp.get(), C};
  parallel_chunks((M + MR - 1) / MR, MC / MR, rows_job, &job);
  if (bpWords > (int64_t(16) << 20)) {
    bp.reset();
    bpWords = 0;
  }
}

#else
bool bf16_cpu() { return false; }
void gemm_bf16(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
               float*, int64_t) {}
#endif

}  // namespace trm
