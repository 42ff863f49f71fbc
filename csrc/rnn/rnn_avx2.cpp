// AVX2 + FMA recurrent step kernels: W = 8 lanes, 6 rows x 2 vectors = 12 accumulators + 2
// weight vectors + 1 broadcast (15 of 16 ymm registers); 12 independent FMAs per k cover the
// 4-5 cycle FMA latency on 2 pipes and 8 loads per 12 FMAs leave the load ports slack.
#if defined(FASTLAYERS_X86)
#include <immintrin.h>

#include "rnn/rnn_kernels_impl.h"

namespace fl {
namespace {

struct Avx2 {
  using V = __m256;
  static constexpr int W = 8;
  static constexpr int kRows = 6;
  static constexpr int kVecs = 2;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_store_ps(p, v); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static __m256i mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V loadn(const float* p, int n) { return _mm256_maskload_ps(p, mask(n)); }
  static void storen(float* p, V v, int n) { _mm256_maskstore_ps(p, mask(n), v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V fnma(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }  // c - a*b
  static V tanh(V x) { return rnn_detail::rational_tanh<Avx2>(x); }
  static V relu(V x) { return _mm256_max_ps(_mm256_setzero_ps(), x); }  // NaN in x propagates
  static V relu_mask(V g, V h) { return _mm256_and_ps(g, _mm256_cmp_ps(h, _mm256_setzero_ps(), _CMP_GT_OQ)); }
};

}  // namespace

RnnKernels rnn_kernels_avx2() { return rnn_detail::make_kernels<Avx2>(); }

}  // namespace fl
#endif
