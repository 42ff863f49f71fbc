// The register-tile loop shared by the SIMD micro-kernels, written once over a small SIMD
// traits type S (vector type V, lane count W, load/store/fma/broadcast). Included only by
// the ISA translation units (ukernel_avx2.cpp, ukernel_avx512.cpp), each compiled with its
// own -m flags, so no wide instruction leaks into code that runs before the cpuid check.
#pragma once

#include <cstring>

#include "gemm/ukernel.h"

namespace fl {
namespace ukernel_detail {

template <class S, int MR, int NV>
inline void store_tile(typename S::V (&acc)[MR][NV], float* c, index_t ldc, float alpha,
                       float beta, int mr, int nr) {
  using V = typename S::V;
  constexpr int NR = NV * S::W;
  const V valpha = S::set1(alpha), vbeta = S::set1(beta);
  if (mr == MR && nr == NR) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        float* dst = c + i * ldc + v * S::W;
        V r = S::mul(acc[i][v], valpha);
        if (beta != 0.0f) r = S::fma(S::loadu(dst), vbeta, r);
        S::storeu(dst, r);
      }
    }
    return;
  }
  // Edge tile: spill to a local tile, then touch only the valid mr x nr part of C.
  alignas(64) float tile[MR * NR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) S::store(tile + i * NR + v * S::W, S::mul(acc[i][v], valpha));
  for (int i = 0; i < mr; ++i) {
    float* dst = c + i * ldc;
    const float* src = tile + i * NR;
    if (beta == 0.0f) {
      std::memcpy(dst, src, sizeof(float) * nr);
    } else {
      for (int j = 0; j < nr; ++j) dst[j] = src[j] + beta * dst[j];
    }
  }
}

template <class S, int MR, int NV>
void ukernel(index_t kc, const float* a, const float* b, float* c, index_t ldc, float alpha,
             float beta, int mr, int nr) {
  using V = typename S::V;
  constexpr int NR = NV * S::W;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = S::zero();

  for (index_t p = 0; p < kc; ++p) {
    V bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = S::load(b + v * S::W);
    S::prefetch(b + 8 * NR);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const V ai = S::set1(a[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = S::fma(ai, bv[v], acc[i][v]);
    }
    a += MR;
    b += NR;
  }
  store_tile<S, MR, NV>(acc, c, ldc, alpha, beta, mr, nr);
}

}  // namespace ukernel_detail
}  // namespace fl
