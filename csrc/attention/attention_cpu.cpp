// Dispatch of the attention kernels to the active ISA, and the portable (scalar-vector)
// instantiation of attention_impl.h used when neither AVX2 nor AVX-512 is available.
#include <cmath>

#include "attention/attention.h"
#include "attention/attention_impl.h"
#include "core/cpu_features.h"

namespace fl {
namespace {

// One lane; NR = 8 matches the generic 4 x 8 GEMM micro-kernel.
struct Generic {
  using V = float;
  static constexpr int W = 1, MR = 4, NR = 8;
  static Ukernel ukernel() { return ukernel_generic(); }
  static V zero() { return 0.0f; }
  static V set1(float x) { return x; }
  static V load(const float* p) { return *p; }
  static void transpose8(const float* src, index_t rs, float* dst, index_t ds, const float* mul) {
    for (index_t k = 0; k < 8; ++k)
      for (index_t i = 0; i < 8; ++i) dst[k * ds + i] = src[i * rs + k] * mul[k];
  }
  static V bcast(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V max(V a, V b) { return a > b ? a : b; }
  static V select_gt(V a, V b, V x, V y) { return a > b ? x : y; }
  static bool any_gt(V a, V b) { return a > b; }
  static V exp(V x) { return x < -87.3f ? 0.0f : std::exp(x); }  // same underflow as the SIMD exp
  // Exactly 0 where the SIMD exp2 rounds the exponent to -127 (x <= -126.5, NaN included).
  static V exp2(V x) { return !(x > -126.5f) ? 0.0f : std::exp2(x); }
};

}  // namespace

void attention_forward_generic(const AttentionParams& p) { attn_detail::forward<Generic>(p); }
void attention_backward_generic(const AttentionParams& p) { attn_detail::backward<Generic>(p); }

void run_attention_forward(const AttentionParams& p) {
#if defined(FASTLAYERS_X86)
  switch (active_isa()) {
    case Isa::avx512: return attention_forward_avx512(p);
    case Isa::avx2: return attention_forward_avx2(p);
    default: break;
  }
#endif
  attention_forward_generic(p);
}

void run_attention_backward(const AttentionParams& p) {
#if defined(FASTLAYERS_X86)
  switch (active_isa()) {
    case Isa::avx512: return attention_backward_avx512(p);
    case Isa::avx2: return attention_backward_avx2(p);
    default: break;
  }
#endif
  attention_backward_generic(p);
}

}  // namespace fl
