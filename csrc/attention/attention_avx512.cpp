// AVX-512 instantiation of attention_impl.h: 16-lane vectors, the 12 x 32 GEMM micro-kernel
// (a query panel is two zmm registers wide). Structurally identical to attention_avx2.cpp.
#if defined(FASTLAYERS_X86)
// GCC 12 flags its own _mm512_* intrinsics (max, min, slli, cvtps, roundscale) as "maybe
// uninitialized" at -O3 (GCC bug 105593, fixed in 13): a false positive in the header.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// The same header false positive as plain -Wuninitialized once _mm512_max_ps is inlined into
// the S kernel's epilogue (the fused exp2).
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include "attention/attention_impl.h"
#include "attention/transpose8_avx.h"

namespace fl {
namespace {

struct Avx512 {
  using V = __m512;
  static constexpr int W = 16, MR = 12, NR = 32;
  static Ukernel ukernel() { return ukernel_avx512(); }
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_load_ps(p); }
  static void transpose8(const float* src, index_t rs, float* dst, index_t ds, const float* mul) {
    attn_detail::transpose8_avx(src, rs, dst, ds, mul);
  }
  static V bcast(const float* p) { return _mm512_set1_ps(*p); }
  static void store(float* p, V v) { _mm512_store_ps(p, v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V select_gt(V a, V b, V x, V y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), y, x); }
  static bool any_gt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ) != 0; }
  // exp(x) as 2^n * e^r, |r| <= ln2/2, Cephes' degree-5 polynomial for e^r (about 1 ulp).
  // Below -87.3 (e^x < 1.2e-38, the smallest normal float) the result is exactly 0, so that
  // masked -inf scores contribute nothing.
  static V exp(V x) {
    const V lo = _mm512_set1_ps(-87.3f), hi = _mm512_set1_ps(88.3762626647949f);
    const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    V xc = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    const V n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    xc = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    xc = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), xc);
    V y = _mm512_set1_ps(1.9875691500E-4f);
    y = _mm512_fmadd_ps(y, xc, _mm512_set1_ps(1.3981999507E-3f));
    y = _mm512_fmadd_ps(y, xc, _mm512_set1_ps(8.3334519073E-3f));
    y = _mm512_fmadd_ps(y, xc, _mm512_set1_ps(4.1665795894E-2f));
    y = _mm512_fmadd_ps(y, xc, _mm512_set1_ps(1.6666665459E-1f));
    y = _mm512_fmadd_ps(y, xc, _mm512_set1_ps(5.0000001201E-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(xc, xc), _mm512_add_ps(xc, _mm512_set1_ps(1.0f)));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    y = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
    return _mm512_mask_blend_ps(under, y, _mm512_setzero_ps());
  }
  // 2^x: the AVX2 one (see attention_avx2.cpp) with 16 lanes.
  static V exp2(V x) {
    const V magic = _mm512_set1_ps(12583039.0f);  // 1.5 * 2^23 + 127
    const V xc = _mm512_max_ps(x, _mm512_set1_ps(-127.0f));
    const V a = _mm512_add_ps(xc, magic);
    const V f = _mm512_sub_ps(xc, _mm512_sub_ps(a, magic));
    V y = _mm512_set1_ps(1.3147577410563827e-3f);
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(9.67423152178526e-3f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(5.551109462976456e-2f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(2.402215152978897e-1f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(6.931467056274414e-1f));
    y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.0000001192092896f));
    return _mm512_mul_ps(y, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(a), 23)));
  }
};

}  // namespace

void attention_forward_avx512(const AttentionParams& p) { attn_detail::forward<Avx512>(p); }
void attention_backward_avx512(const AttentionParams& p) { attn_detail::backward<Avx512>(p); }

}  // namespace fl
#endif
