// Packing of A and B micro-panels with 8 x 8 AVX transposes, shared by the ISA translation
// units (both compile with AVX2 enabled; the AVX-512 one reuses these 256-bit routines).
// The portable loops in gemm_cpu.cpp gathered one float per load/store: ~4% of a 1024^3
// GEMM on one Zen 3 core, and most of the time of small ones.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "core/common.h"

namespace fl {
namespace pack_detail {
// Internal linkage: these non-template helpers are compiled once per ISA translation unit
// with different -m flags; as inline functions with external linkage the linker could keep
// the AVX-512 copy for the AVX2 kernels too (an illegal instruction on AVX2-only CPUs).
namespace {

// In-register 8 x 8 transpose: r[i] (row i) -> r[j] (column j).
inline void transpose8(__m256 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// A (rows x kc at strides rs, cs) -> MR-row micro-panels, dst[p*MR + i], zero-padded.
// Row-major A (cs == 1): 8 x 8 blocks transposed in registers; a column's 8-lane store
// may spill up to 7 lanes past its MR values, which the next store (or the caller's
// slack of 8 floats after the buffer) absorbs, so stores go in increasing address order.
template <int MR>
void pack_a(const float* a, index_t rs, index_t cs, index_t mc, index_t kc, float* dst) {
  for (index_t i0 = 0; i0 < mc; i0 += MR) {
    const int rows = static_cast<int>(std::min<index_t>(MR, mc - i0));
    const float* src = a + i0 * rs;
    index_t p = 0;
    if (cs == 1) {
      for (; p + 8 <= kc; p += 8) {
        __m256 r[(MR + 7) / 8][8];
#pragma GCC unroll 2
        for (int g = 0; g < (MR + 7) / 8; ++g) {
#pragma GCC unroll 8
          for (int i = 0; i < 8; ++i) {
            const int row = g * 8 + i;
            r[g][i] = row < rows ? _mm256_loadu_ps(src + row * rs + p) : _mm256_setzero_ps();
          }
          transpose8(r[g]);
        }
#pragma GCC unroll 8
        for (int q = 0; q < 8; ++q)
#pragma GCC unroll 2
          for (int g = 0; g < (MR + 7) / 8; ++g) _mm256_storeu_ps(dst + (p + q) * MR + g * 8, r[g][q]);
      }
    } else if (rs == 1 && rows == MR) {
      for (; p < kc; ++p) std::memcpy(dst + p * MR, src + p * cs, sizeof(float) * MR);
    }
    for (; p < kc; ++p) {
      for (int i = 0; i < rows; ++i) dst[p * MR + i] = src[i * rs + p * cs];
      for (int i = rows; i < MR; ++i) dst[p * MR + i] = 0.0f;
    }
    dst += kc * MR;
  }
}

// One NR-column micro-panel of B (kc x cols at strides rs, cs), zero-padded to NR.
template <int NR>
void pack_b_panel(const float* b, index_t rs, index_t cs, index_t kc, int cols, float* dst) {
  if (cs == 1 && cols == NR) {
    for (index_t p = 0; p < kc; ++p) {
#pragma GCC unroll 4
      for (int v = 0; v < NR; v += 8) _mm256_storeu_ps(dst + p * NR + v, _mm256_loadu_ps(b + p * rs + v));
    }
    return;
  }
  index_t p = 0;
  if (rs == 1 && cols == NR) {  // B column-major (b.T): 8 columns x 8 k transposed at a time
    for (; p + 8 <= kc; p += 8) {
#pragma GCC unroll 4
      for (int j0 = 0; j0 < NR; j0 += 8) {
        __m256 r[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(b + (j0 + j) * cs + p);
        transpose8(r);
#pragma GCC unroll 8
        for (int q = 0; q < 8; ++q) _mm256_storeu_ps(dst + (p + q) * NR + j0, r[q]);
      }
    }
  }
  for (; p < kc; ++p) {
    const float* row = b + p * rs;
    float* out = dst + p * NR;
    for (int j = 0; j < cols; ++j) out[j] = row[j * cs];
    for (int j = cols; j < NR; ++j) out[j] = 0.0f;
  }
}

// `panels` full NR-column micro-panels of a B with contiguous columns, row by row: each B row
// is read as one contiguous run (DRAM- and prefetcher-friendly; panel by panel read 64 bytes
// per row at a stride of n floats, ~15% slower on 64 x 4096 x 4096). Panel jp goes to
// dst + jp * kc * NR.
template <int NR>
void pack_b_rows(const float* b, index_t rs, index_t kc, index_t panels, float* dst) {
  for (index_t p = 0; p < kc; ++p) {
    const float* row = b + p * rs;
    float* out = dst + p * NR;
    for (index_t jp = 0; jp < panels; ++jp) {
#pragma GCC unroll 4
      for (int v = 0; v < NR; v += 8) _mm256_storeu_ps(out + jp * kc * NR + v, _mm256_loadu_ps(row + jp * NR + v));
    }
  }
}

}  // namespace
}  // namespace pack_detail
}  // namespace fl
