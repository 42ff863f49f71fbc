// AVX2 + FMA direct conv micro-kernels. Spatial: 4 x 24 (12 accumulators + 3 input vectors + 1
// broadcast), not the GEMM's 6 x 16: 7 loads per 12 FMAs instead of 8, and 64/128/256/512
// output channels split into whole 4-row panels where 6 rows left 2 of every 66 computed
// for nothing. The weights are packed for it (Plan(p, dk) in conv_forward.cpp). Kernel
// loop alone, 1 thread, 1x64x56x56 -> 64: 90 -> 93 GFLOP/s; 1x128x28x28: 88 -> 92; whole
// conv2d 84 -> 87 and 82 -> 86. Pointwise: the GEMM's 6 x 16 (see DirectUse).
#if defined(FASTLAYERS_X86)
#include <immintrin.h>

#include "conv/direct_impl.h"

namespace fl {
namespace {

struct Avx2 {
  using V = __m256;
  static constexpr int W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
};

}  // namespace

DirectKernel direct_kernel_avx2(DirectUse use) {
  if (use == DirectUse::pointwise) return {&direct_detail::direct_ukernel<Avx2, 6, 2>, 6, 16};
  return {&direct_detail::direct_ukernel<Avx2, 4, 3>, 4, 24};
}

}  // namespace fl
#endif
