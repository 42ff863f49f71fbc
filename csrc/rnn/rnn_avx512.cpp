// AVX-512 recurrent step kernels: W = 16 lanes, 6 rows x 4 vectors = 24 accumulators + 4
// weight vectors + 1 broadcast (29 of 32 zmm registers). Same design as rnn_avx2.cpp.
#if defined(FASTLAYERS_X86)
#include <immintrin.h>

#include "rnn/rnn_kernels_impl.h"

namespace fl {
namespace {

struct Avx512 {
  using V = __m512;
  static constexpr int W = 16;
  static constexpr int kRows = 6;
  static constexpr int kVecs = 4;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_load_ps(p); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_store_ps(p, v); }
  static void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  static __mmask16 mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  static V loadn(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static void storen(float* p, V v, int n) { _mm512_mask_storeu_ps(p, mask(n), v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V fnma(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a*b
  static V tanh(V x) { return rnn_detail::rational_tanh<Avx512>(x); }
  static V relu(V x) { return _mm512_max_ps(_mm512_setzero_ps(), x); }  // NaN in x propagates
  static V relu_mask(V g, V h) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(h, _mm512_setzero_ps(), _CMP_GT_OQ), g);
  }
};

}  // namespace

RnnKernels rnn_kernels_avx512() { return rnn_detail::make_kernels<Avx512>(); }

}  // namespace fl
#endif
