// AVX2 + FMA instantiation of attention_impl.h: 8-lane vectors, the 6 x 16 GEMM micro-kernel
// (a query panel is two ymm registers wide). Structurally identical to attention_avx512.cpp.
#if defined(FASTLAYERS_X86)
#include <immintrin.h>

#include "attention/attention_impl.h"

namespace fl {
namespace {

struct Avx2 {
  using V = __m256;
  static constexpr int W = 8, MR = 6, NR = 16;
  static Ukernel ukernel() { return ukernel_avx2(); }
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static void store(float* p, V v) { _mm256_store_ps(p, v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V select_gt(V a, V b, V x, V y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_GT_OQ)); }
  // exp(x) as 2^n * e^r, |r| <= ln2/2, Cephes' degree-5 polynomial for e^r (about 1 ulp).
  // Below -87.3 (e^x < 1.2e-38, the smallest normal float) the result is exactly 0, so that
  // masked -inf scores contribute nothing.
  static V exp(V x) {
    const V lo = _mm256_set1_ps(-87.3f), hi = _mm256_set1_ps(88.3762626647949f);
    const V under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    V xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    const V n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    xc = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    xc = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), xc);
    V y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, xc, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, xc, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, xc, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, xc, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, xc, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(xc, xc), _mm256_add_ps(xc, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(under, y);
  }
};

}  // namespace

void attention_forward_avx2(const AttentionParams& p) { attn_detail::forward<Avx2>(p); }
void attention_backward_avx2(const AttentionParams& p) { attn_detail::backward<Avx2>(p); }

}  // namespace fl
#endif
