// Device-side pieces shared by the attention *.cu files: the kernel argument block, dtype
// conversions, mask lookup, and the tensor-core primitives (cp.async, ldmatrix, mma.sync
// m16n8k16 with float32 accumulation; the same instructions as gemm/gemm.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "attention/attention_cuda.h"
#include "core/cuda_check.cuh"
#include "core/cuda_mma.cuh"
#include "core/cuda_num.cuh"

namespace fl {
namespace cuda {
namespace attn {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.69314718055994531f;

struct DevMats {
  const void* ptr;
  const int64_t* off;
  int64_t rs, cs;
};

// Everything a kernel needs, by value (one launch = one struct in constant memory).
struct KArgs {
  int64_t nbh, group, L, S, E, Ev;
  DevMats q, k, v, mask;
  int mask_kind;  // 0 none, 1 bool, 2 additive
  int causal;
  float scale;       // softmax scale
  float scale_log2;  // scale * log2(e): scores are kept in base-2 units (exp2 is one MUFU op)
  void* out;
  float* lse;
  const void* dout;
  const void* o;
  const float* lse_in;
  float* delta;   // (nbh, L): rowsum(dO * O)
  float* dq_acc;  // (nbh, L, E) float32, flash backward only
  void* dq;
  void* dk;
  void* dv;
  int64_t bh0;  // first head of this launch (grids are split at 65535 heads)
};

// Mask term of score (bh, i, j) in base-2 units; `moff` = mask.off[bh], hoisted by the caller.
__device__ __forceinline__ float mask_log2(const KArgs& a, int64_t moff, int64_t i, int64_t j) {
  const int64_t idx = moff + i * a.mask.rs + j * a.mask.cs;
  if (a.mask_kind == 1) return static_cast<const uint8_t*>(a.mask.ptr)[idx] ? 0.0f : -INFINITY;
  return static_cast<const float*>(a.mask.ptr)[idx] * kLog2e;
}

// exp2 of a score minus a row maximum; -inf - (-inf) cannot occur (the callers substitute 0
// for an empty row's maximum), -inf in gives 0.
__device__ __forceinline__ float ex2(float x) { return exp2f(x); }

using namespace ptx;  // cp.async, ldmatrix, mma.sync: core/cuda_mma.cuh (shared with gemm.cu)

// ---- fragment addressing (the four ldmatrix patterns of gemm.cu; checked on the CPU by
// bench/gpu/emulate_flash_fragments.py). `ld` is the shared row pitch in elements.
// A operand (16 x 16, m x k) stored row-major [m][k]: lane -> row l%16, k (l/16)*8.
__device__ __forceinline__ int frag_a_rowmajor(int lane, int ld, int m0, int k0) {
  return (m0 + (lane & 15)) * ld + k0 + (lane >> 4) * 8;
}
// A operand stored [k][m] (transposed on load): lane -> k l%8 + (l/16)*8, m ((l/8)%2)*8.
__device__ __forceinline__ int frag_a_colmajor(int lane, int ld, int m0, int k0) {
  return (k0 + (lane & 7) + (lane >> 4) * 8) * ld + m0 + ((lane >> 3) & 1) * 8;
}
// Two B operands (k16 x n8, n tiles n0 and n0+8) stored [n][k]: regs {0,1} and {2,3}.
__device__ __forceinline__ int frag_b_nmajor(int lane, int ld, int k0, int n0) {
  return (n0 + (lane & 7) + (lane >> 4) * 8) * ld + k0 + ((lane >> 3) & 1) * 8;
}
// The same two B operands stored [k][n] (transposed on load).
__device__ __forceinline__ int frag_b_kmajor(int lane, int ld, int k0, int n0) {
  return (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0 + (lane >> 4) * 8;
}

// Copy rows [row0, row0 + ROWS) of a row-major matrix (row stride rs elements, COLS contiguous
// elements per row, 16-byte aligned rows) into shared memory with row pitch LD; rows at or
// past `rows_lim` are zero-filled (cp.async with src-size 0 reads nothing).
template <typename T, int ROWS, int COLS, int LD, int THREADS>
__device__ __forceinline__ void load_rows_async(T* s, const T* g, int64_t rs, int64_t row0, int64_t rows_lim) {
  constexpr int kPerRow = COLS / 8;
  constexpr int kChunks = ROWS * kPerRow;
#pragma unroll
  for (int i = 0; i < (kChunks + THREADS - 1) / THREADS; ++i) {
    const int c = int(threadIdx.x) + i * THREADS;
    if (kChunks % THREADS != 0 && c >= kChunks) break;
    const int r = c / kPerRow, cc = (c % kPerRow) * 8;
    const int64_t gr = row0 + r;
    const T* src = g;
    int bytes = 0;
    if (gr < rows_lim) {
      src = g + gr * rs + cc;
      bytes = 16;
    }
    cp_async_16(s + r * LD + cc, src, bytes);
  }
}

}  // namespace attn

// Flash launchers (attention_flash_f16.cu / attention_flash_bf16.cu).
void flash_forward_f16(const attn::KArgs& a, int64_t E, cudaStream_t s);
void flash_forward_bf16(const attn::KArgs& a, int64_t E, cudaStream_t s);
void flash_backward_f16(const attn::KArgs& a, int64_t E, cudaStream_t s);
void flash_backward_bf16(const attn::KArgs& a, int64_t E, cudaStream_t s);

}  // namespace cuda
}  // namespace fl
