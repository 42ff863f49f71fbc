// Single-precision GEMM, the engine of linear, conv, LSTM and attention:
//   C = act(alpha * op(A) op(B) + beta * C + row_bias[i] + col_bias[j])
// A is read through element strides (a_rs, a_cs): A(i, p) = a[i*a_rs + p*a_cs], so a
// transpose or a non-contiguous view costs nothing extra (packing absorbs the strides);
// likewise B(p, j) = b[p*b_rs + j*b_cs] and C(i, j) = c[i*ldc + j].
#pragma once

#include "core/common.h"

namespace fl {

enum class Activation : int { none = 0, relu = 1, gelu = 2, gelu_tanh = 3, tanh = 4, sigmoid = 5 };

struct GemmParams {
  index_t m = 0, n = 0, k = 0;
  const float* a = nullptr;  // m x k
  index_t a_rs = 0, a_cs = 1;
  const float* b = nullptr;  // k x n
  index_t b_rs = 0, b_cs = 1;
  float* c = nullptr;        // m x n, unit column stride
  index_t ldc = 0;
  float alpha = 1.0f, beta = 0.0f;  // beta == 0: C is never read (may hold NaN garbage)
  const float* row_bias = nullptr;  // length m, added to row i (conv: one per output channel)
  const float* col_bias = nullptr;  // length n, added to column j (linear: one per feature)
  Activation act = Activation::none;
  int num_threads = 0;  // 0: fl::num_threads() (scaled down for small problems)
};

void run_gemm(const GemmParams& p);

// `batch` independent GEMMs sharing sizes; matrix b of batch i starts at a + i*a_bs, etc.
// Batches run in parallel when each is too small to feed all threads.
void run_gemm_batched(const GemmParams& p, index_t batch, index_t a_bs, index_t b_bs, index_t c_bs);

// The epilogue alone (bias + activation over an m x n block), for kernels that accumulate
// themselves. In place, row stride ldc.
void apply_epilogue(float* c, index_t ldc, index_t m, index_t n, const float* row_bias,
                    const float* col_bias, Activation act);

}  // namespace fl
