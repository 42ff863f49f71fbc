// 8 x 8 float transpose with a per-output-row multiplier, in 256-bit AVX: shared by the AVX2
// and AVX-512 attention translation units (the forward's Q^T panels and its O^T -> O
// epilogue, which cost ~5% of the forward at L = 512 as scalar element-by-element loops).
#pragma once

#include <immintrin.h>

#include "core/common.h"

namespace fl {
namespace attn_detail {

// dst[k * ds + i] = src[i * rs + k] * mul[k] for i, k < 8 (unaligned, any strides).
inline void transpose8_avx(const float* src, index_t rs, float* dst, index_t ds, const float* mul) {
  const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + rs), r2 = _mm256_loadu_ps(src + 2 * rs),
               r3 = _mm256_loadu_ps(src + 3 * rs), r4 = _mm256_loadu_ps(src + 4 * rs),
               r5 = _mm256_loadu_ps(src + 5 * rs), r6 = _mm256_loadu_ps(src + 6 * rs),
               r7 = _mm256_loadu_ps(src + 7 * rs);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
               t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
               t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE),
               s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE),
               s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE),
               s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst, _mm256_mul_ps(_mm256_permute2f128_ps(s0, s4, 0x20), _mm256_set1_ps(mul[0])));
  _mm256_storeu_ps(dst + ds, _mm256_mul_ps(_mm256_permute2f128_ps(s1, s5, 0x20), _mm256_set1_ps(mul[1])));
  _mm256_storeu_ps(dst + 2 * ds, _mm256_mul_ps(_mm256_permute2f128_ps(s2, s6, 0x20), _mm256_set1_ps(mul[2])));
  _mm256_storeu_ps(dst + 3 * ds, _mm256_mul_ps(_mm256_permute2f128_ps(s3, s7, 0x20), _mm256_set1_ps(mul[3])));
  _mm256_storeu_ps(dst + 4 * ds, _mm256_mul_ps(_mm256_permute2f128_ps(s0, s4, 0x31), _mm256_set1_ps(mul[4])));
  _mm256_storeu_ps(dst + 5 * ds, _mm256_mul_ps(_mm256_permute2f128_ps(s1, s5, 0x31), _mm256_set1_ps(mul[5])));
  _mm256_storeu_ps(dst + 6 * ds, _mm256_mul_ps(_mm256_permute2f128_ps(s2, s6, 0x31), _mm256_set1_ps(mul[6])));
  _mm256_storeu_ps(dst + 7 * ds, _mm256_mul_ps(_mm256_permute2f128_ps(s3, s7, 0x31), _mm256_set1_ps(mul[7])));
}

}  // namespace attn_detail
}  // namespace fl
