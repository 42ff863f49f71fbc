// AVX-512 direct conv micro-kernel: 12 x 32 (24 accumulators + 2 input vectors + 1
// broadcast), matching the 12x32 GEMM kernel's packed weights.
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

DirectKernel direct_kernel_avx512(DirectUse) { return {&direct_detail::direct_ukernel<Avx512, 12, 2>, 12, 32}; }

}  // namespace fl
#endif
