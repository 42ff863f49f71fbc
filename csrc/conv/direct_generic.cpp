// Portable direct conv micro-kernel (4 x 8, matching the generic 4x8 GEMM kernel).
#include "conv/direct.h"

namespace fl {
namespace {

void direct_portable(index_t kc, const float* a, const float* xb, const index_t* off, float* c, index_t ldc,
                     float beta, int mr, int nr) {
  constexpr int kMr = 4, kNr = 8;
  float acc[kMr][kNr] = {};
  for (index_t p = 0; p < kc; ++p) {
    const float* src = xb + off[p];
    for (int i = 0; i < kMr; ++i)
      for (int j = 0; j < kNr; ++j) acc[i][j] += a[i] * src[j];
    a += kMr;
  }
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) c[i * ldc + j] = acc[i][j] + (beta != 0.0f ? beta * c[i * ldc + j] : 0.0f);
}

}  // namespace

DirectKernel direct_kernel_generic(DirectUse) { return {&direct_portable, 4, 8}; }

}  // namespace fl
