// AVX2 + FMA micro-kernel: 6 x 16 tile = 12 ymm accumulators + 2 B vectors + 1 broadcast
// (15 of 16 registers), the Haswell-to-Zen layout that keeps both FMA pipes busy: 12
// independent FMAs per k cover the 4-5 cycle FMA latency on 2 ports.
#if defined(FASTLAYERS_X86)
#include <immintrin.h>

#include "gemm/ukernel_impl.h"

namespace fl {
namespace {

struct Avx2 {
  using V = __m256;
  static constexpr int W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_store_ps(p, v); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static void prefetch(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }
};

}  // namespace

Ukernel ukernel_avx2() {
  return {&ukernel_detail::ukernel<Avx2, 6, 2>, 6, 16, 256, 144, 3072, "avx2 6x16"};
}

}  // namespace fl
#endif
