// Packing of A and B micro-panels with 8 x 8 AVX transposes, shared by the ISA translation
// units (both compile with AVX2 enabled; the AVX-512 one reuses these 256-bit routines).
// The portable loops in gemm_cpu.cpp gathered one float per load/store: ~4% of a 1024^3
// GEMM on one Zen 3 core, and most of the time of small ones.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "core/common.h"
#include "core/transpose8_avx.h"

namespace fl {
namespace pack_detail {
// Internal linkage: these non-template helpers are compiled once per ISA translation unit
// with different -m flags; as inline functions with external linkage the linker could keep
// the AVX-512 copy for the AVX2 kernels too (an illegal instruction on AVX2-only CPUs).
namespace {

using simd_detail::transpose8;  // core/transpose8_avx.h

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
