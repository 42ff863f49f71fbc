// AVX2 + FMA instantiation of attention_impl.h: 8-lane vectors, the 6 x 16 GEMM micro-kernel
// (a query panel is two ymm registers wide). Structurally identical to attention_avx512.cpp.
#if defined(FASTLAYERS_X86)
#include <immintrin.h>

#include "attention/attention_impl.h"
#include "attention/transpose8_avx.h"

namespace fl {
namespace {

struct Avx2 {
  using V = __m256;
  static constexpr int W = 8, MR = 6, NR = 16;
  static Ukernel ukernel() { return ukernel_avx2(); }
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static void transpose8(const float* src, index_t rs, float* dst, index_t ds, const float* mul) {
    attn_detail::transpose8_avx(src, rs, dst, ds, mul);
  }
  static V bcast(const float* p) { return _mm256_broadcast_ss(p); }
  static void store(float* p, V v) { _mm256_store_ps(p, v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V select_gt(V a, V b, V x, V y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_GT_OQ)); }
  static bool any_gt(V a, V b) { return _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ)) != 0; }
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
  // 2^x = 2^n * 2^f, n = round(x) by the 1.5 * 2^23 trick (the sum's low mantissa bits are
  // n + 127, shifted straight into the exponent), f in [-1/2, 1/2], 2^f by a degree-5
  // near-minimax polynomial (relative error 2e-7 measured in float32; the degree-7 Taylor
  // one cost 2 more FMAs per vector for 8e-8). x is clamped below at -127 only: n = -127
  // makes the exponent field 0, so 2^x is exactly 0 for x <= -126.5 (masked -inf scores, and
  // a NaN, which max() turns into -127) with no compare and blend. No upper clamp: the
  // forward calls it with x <= 8 (its lazy-rescale threshold), x <= 128 is what it needs.
  static V exp2(V x) {
    const V magic = _mm256_set1_ps(12583039.0f);  // 1.5 * 2^23 + 127
    const V xc = _mm256_max_ps(x, _mm256_set1_ps(-127.0f));
    const V a = _mm256_add_ps(xc, magic);
    const V f = _mm256_sub_ps(xc, _mm256_sub_ps(a, magic));
    V y = _mm256_set1_ps(1.3147577410563827e-3f);
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(9.67423152178526e-3f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(5.551109462976456e-2f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(2.402215152978897e-1f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(6.931467056274414e-1f));
    y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(1.0000001192092896f));
    return _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(a), 23)));
  }
};

}  // namespace

void attention_forward_avx2(const AttentionParams& p) { attn_detail::forward<Avx2>(p); }
void attention_backward_avx2(const AttentionParams& p) { attn_detail::backward<Avx2>(p); }

}  // namespace fl
#endif
