// AVX-512 direct conv micro-kernels, the AVX2 pair (direct_avx2.cpp) at twice the width and
// twice the registers. Spatial: 8 x 48 (24 accumulators + 3 input vectors + 1 broadcast),
// whole 8-row panels for 64..512 channels where 12 rows computed 72 for 64. Pointwise: the
// GEMM's 12 x 32. Not measured: this machine has no AVX-512 (the choice mirrors AVX2's).
#if defined(FASTLAYERS_X86)
#include <immintrin.h>

#include "conv/direct_impl.h"

namespace fl {
namespace {

struct Avx512 {
  using V = __m512;
  static constexpr int W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
};

}  // namespace

DirectKernel direct_kernel_avx512(DirectUse use) {
  if (use == DirectUse::pointwise) return {&direct_detail::direct_ukernel<Avx512, 12, 2>, 12, 32};
  return {&direct_detail::direct_ukernel<Avx512, 8, 3>, 8, 48};
}

}  // namespace fl
#endif
