// AVX-512 micro-kernel: 12 x 32 tile = 24 zmm accumulators + 2 B vectors + 1 broadcast
// (27 of 32 registers); 24 independent FMAs per k hide the FMA latency on two 512-bit pipes.
#if defined(FASTLAYERS_X86)
#include <immintrin.h>

#include "gemm/ukernel_impl.h"

namespace fl {
namespace {

struct Avx512 {
  using V = __m512;
  static constexpr int W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_load_ps(p); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_store_ps(p, v); }
  static void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static void prefetch(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }
};

}  // namespace

Ukernel ukernel_avx512() {
  return {&ukernel_detail::ukernel<Avx512, 12, 2>, 12, 32, 256, 144, 3072, "avx512 12x32"};
}

}  // namespace fl
#endif
