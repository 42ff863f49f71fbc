// The direct micro-kernel loop (see direct.h), written once over a small SIMD traits type S
// and included by the ISA translation units only (direct_avx2.cpp, direct_avx512.cpp).
#pragma once

#include "conv/direct.h"

namespace fl {
namespace direct_detail {

template <class S, int MR, int NV>
void direct_ukernel(index_t kc, const float* a, const float* xb, const index_t* off, float* c, index_t ldc,
                    float beta, int mr, int nr) {
  using V = typename S::V;
  constexpr int NR = NV * S::W;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = S::zero();
  for (index_t p = 0; p < kc; ++p) {
    const float* src = xb + off[p];
    V bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = S::loadu(src + v * S::W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const V ai = S::set1(a[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = S::fma(ai, bv[v], acc[i][v]);
    }
    a += MR;
  }
  if (mr == MR && nr == NR) {
    const V vbeta = S::set1(beta);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        float* dst = c + i * ldc + v * S::W;
        S::storeu(dst, beta != 0.0f ? S::fma(S::loadu(dst), vbeta, acc[i][v]) : acc[i][v]);
      }
    return;
  }
  alignas(64) float tile[MR * NR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) S::storeu(tile + i * NR + v * S::W, acc[i][v]);
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) c[i * ldc + j] = tile[i * NR + j] + (beta != 0.0f ? beta * c[i * ldc + j] : 0.0f);
}

}  // namespace direct_detail
}  // namespace fl
