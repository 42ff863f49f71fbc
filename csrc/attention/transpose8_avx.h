// 8 x 8 float transpose with a per-output-row multiplier, in 256-bit AVX: shared by the AVX2
// and AVX-512 attention translation units (the forward's Q^T panels and its O^T -> O
// epilogue, which cost ~5% of the forward at L = 512 as scalar element-by-element loops).
#pragma once

#include <immintrin.h>

#include "core/common.h"
#include "core/transpose8_avx.h"

namespace fl {
namespace attn_detail {
namespace {  // internal linkage, as core/transpose8_avx.h says why

// dst[k * ds + i] = src[i * rs + k] * mul[k] for i, k < 8 (unaligned, any strides).
inline void transpose8_avx(const float* src, index_t rs, float* dst, index_t ds, const float* mul) {
  __m256 r[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * rs);
  simd_detail::transpose8(r);
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) _mm256_storeu_ps(dst + k * ds, _mm256_mul_ps(r[k], _mm256_set1_ps(mul[k])));
}

}  // namespace
}  // namespace attn_detail
}  // namespace fl
