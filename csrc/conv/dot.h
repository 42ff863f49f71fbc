// The last, narrow column panel of the batch-1 convolution (conv_forward.cpp, forward_few)
// as dot products along the taps instead of an MR x NR micro-kernel call.
//
// A 7x7 map has 49 = 3 x 16 + 1 columns: the 6x16 micro-kernel computes 64 columns for 49
// (23% of the FMAs wasted, 512x7x7 ran at 0.73x PyTorch). Here each of the nj <= NR/2 last
// columns is a kc-long row bt (the column of the im2col matrix, copied out of the packed
// panel), each weight row is read in place, and 6 rows x 2 columns are accumulated 8 taps
// per vector: 12 FMAs per 2 + 6 loads, the same FMA rate per column as the micro-kernel,
// so the narrow panel costs nj/NR of a full one.
//
//   C[i*ldc + j] = sum_{p<kc} a[i*lda + p] * bt[j*ldb + p] + beta * C[i*ldc + j] (+ bias[i])
//   for i < mr, j < nj (beta == 0: C is not read; bias may be null).
#pragma once

#include "core/common.h"

namespace fl {

using DotPanelFn = void (*)(index_t kc, const float* a, index_t lda, int mr, const float* bt, index_t ldb, int nj,
                            float* c, index_t ldc, float beta, const float* bias);

namespace dot_generic {
void dot_panel(index_t kc, const float* a, index_t lda, int mr, const float* bt, index_t ldb, int nj, float* c,
               index_t ldc, float beta, const float* bias);
}
namespace dot_avx2 {
void dot_panel(index_t kc, const float* a, index_t lda, int mr, const float* bt, index_t ldb, int nj, float* c,
               index_t ldc, float beta, const float* bias);
}
namespace dot_avx512 {
void dot_panel(index_t kc, const float* a, index_t lda, int mr, const float* bt, index_t ldb, int nj, float* c,
               index_t ldc, float beta, const float* bias);
}

}  // namespace fl
