// AVX2 + FMA direct conv micro-kernel: 6 x 16, the same register budget as the 6x16 GEMM
// kernel (12 accumulators + 2 input vectors + 1 broadcast), so it shares its packed weights.
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

DirectKernel direct_kernel_avx2() { return {&direct_detail::direct_ukernel<Avx2, 6, 2>, 6, 16}; }

}  // namespace fl
#endif
