// Portable micro-kernel (any CPU, baseline flags): a 4 x 8 tile in plain C++ that the
// compiler may vectorise with whatever the baseline ISA offers (SSE2 on x86-64).
#include <cstring>

#include "gemm/ukernel.h"

namespace fl {
namespace {

constexpr int kMr = 4, kNr = 8;

void ukernel_portable(index_t kc, const float* a, const float* b, float* c, index_t ldc,
                      float alpha, float beta, int mr, int nr) {
  float acc[kMr][kNr] = {};
  for (index_t p = 0; p < kc; ++p) {
    for (int i = 0; i < kMr; ++i)
      for (int j = 0; j < kNr; ++j) acc[i][j] += a[i] * b[j];
    a += kMr;
    b += kNr;
  }
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      float r = alpha * acc[i][j];
      if (beta != 0.0f) r += beta * c[i * ldc + j];
      c[i * ldc + j] = r;
    }
}

}  // namespace

Ukernel ukernel_generic() { return {&ukernel_portable, kMr, kNr, 256, 128, 2048, "generic 4x8"}; }

Ukernel ukernel_for(Isa isa) {
#if defined(FASTLAYERS_X86)
  if (isa == Isa::avx512) return ukernel_avx512();
  if (isa == Isa::avx2) return ukernel_avx2();
#endif
  return ukernel_generic();
}

}  // namespace fl
