// The math behind the native kernels: plain C++ over float32 row-major buffers, sgemm from the
// system BLAS. No N-API here (addon.cc is the glue), so the kernels read like their formulas.
#pragma once
#include <cstddef>
#include <cstdint>

namespace trm {

constexpr int kMaxRank = 16;

// Worker threads for the elementwise kernels (the BLAS has its own); 1 runs everything inline.
void set_threads(int n);
int threads();
// Worker threads over attention's (batch, head) pairs, each with a single-threaded BLAS.
void set_attention_threads(int n);
int attention_threads();
// The BLAS's thread count, safe while other threads are inside attention (see kernels.cc).
void set_blas_threads(int n);
int blas_threads();
// The instruction set the kernels' row loops and attention picked: "avx512", "avx2" or "base".
const char* isa();

// C[i] = alpha * op(A[i]) @ op(B[i]) + beta * C[i] for i < batch, with element strides between items.
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          int64_t strideA, const float* B, int64_t ldb, int64_t strideB, float beta, float* C, int64_t ldc,
          int64_t strideC, int64_t batch);

// Opt-in bfloat16 products (bf16.cc) for this thread's gemm calls: both operands rounded to bf16,
// sums in float32. Returns whether it is on: only where the CPU has AVX-512 BF16.
bool set_matmul_bf16(bool on);
bool matmul_bf16();
// The CPU has AVX-512 BF16 (bf16_cpu) and TRM_FORGE_NATIVE_ISA does not cap the kernels below AVX-512.
bool bf16_cpu();
bool bf16_supported();
// C = alpha op(A) op(B) + beta C in bf16 x bf16 -> float32; callers check bf16_supported().
void gemm_bf16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// Runs fn(ctx, begin, end) over [0, n) on the kernel threads, chunks of at least grain items.
void parallel_chunks(int64_t n, int64_t grain, void (*fn)(void*, int64_t, int64_t), void* ctx);

// Parameter-free RMSNorm over rows of length n: y = x r with r = 1 / sqrt(mean(x^2) + eps), r per
// row written to `r`. With b non-null the input is a + b (the residual add, fused).
void rms_norm(const float* a, const float* b, float* y, float* r, int64_t rows, int64_t n, float eps);
// From the output alone: dx = r (dy - y mean(dy y)); nothing but y and r is kept for backward.
void rms_norm_grad(const float* dy, const float* y, const float* r, float* dx, int64_t rows, int64_t n);

// SwiGLU activation on a fused [rows, 2w] gate|up buffer: y = silu(gate) * up, [rows, w].
void silu_gate_mul(const float* gu, float* y, int64_t rows, int64_t w);
void silu_gate_mul_grad(const float* dy, const float* gu, float* dgu, int64_t rows, int64_t w);

// Bidirectional attention on the fused projection qkv [B, S, 3D] (q | k | v, head-major), with
// rotate-half RoPE on q and k when cos/sin ([S, hd]) are given. out is [B, S, D].
void attention(const float* qkv, float* out, int64_t B, int64_t S, int64_t H, int64_t hd, const float* cos,
               const float* sin);
// Recomputes the probabilities from qkv (nothing but qkv is kept for backward) and writes dqkv.
void attention_grad(const float* dout, const float* qkv, float* dqkv, int64_t B, int64_t S, int64_t H,
                    int64_t hd, const float* cos, const float* sin);

// log(stablemax(x)) over rows of length n, computed in double as the reference does.
void log_stablemax(const float* x, float* y, int64_t rows, int64_t n);
void log_stablemax_grad(const float* dy, const float* x, float* dx, int64_t rows, int64_t n);

// Copies an N-d box: dst[sum i_k dstStride_k] = src[sum i_k srcStride_k] for i < shape, for
// elements of esize bytes (1 or 4). Slice, transpose, tile and pad are all this one loop.
void strided_copy(const void* src, void* dst, int esize, int rank, const int64_t* shape, const int64_t* src_stride,
                  const int64_t* dst_stride);

// y = op(x) elementwise: 0 sqrt, 1 square (the optimiser's, over every weight).
void unary(int op, const float* x, float* y, int64_t n);

// out = a op b over shape (out contiguous), reading a and b through strides (0 = broadcast).
enum BinaryOp { kAdd = 0, kSub = 1, kMul = 2, kDiv = 3 };
void binary(int op, const float* a, const int64_t* a_stride, const float* b, const int64_t* b_stride, float* out,
            int rank, const int64_t* shape);

}  // namespace trm
