// Max and average pooling of one plane, written once and compiled per ISA (pool_cpu.cpp
// baseline, pool_avx2.cpp, pool_avx512.cpp set FL_POOL_NS and include this file).
//
// Each output row is built tap by tap: for window tap (i, j) the output columns whose tap
// lands inside the input form one range [lo, hi), and over that range the update is a
// branch-free compare-and-select the compiler vectorises across output columns (`omp simd`).
// Taps run in PyTorch's row-major window order, so ties keep the first maximum exactly as
// PyTorch does; positions are tracked as int32 in a row scratch (8 per vector, the same
// width as the floats) and widened to int64 once per row. The output row stays in L1 across
// the R*S taps (56 floats at the ResNet stem).
#include <cstdint>

#include "pool/pool.h"

#ifndef FL_POOL_NS
#error "define FL_POOL_NS before including pool_impl.h"
#endif

namespace fl {
namespace FL_POOL_NS {
namespace {

inline index_t imin(index_t a, index_t b) { return a < b ? a : b; }
inline index_t imax(index_t a, index_t b) { return a > b ? a : b; }
inline index_t cdiv(index_t a, index_t b) { return (a + b - 1) / b; }

inline void tap_range(index_t off, index_t s, index_t in, index_t out, index_t& lo, index_t& hi) {
  lo = off >= 0 ? 0 : cdiv(-off, s);
  hi = in - 1 - off >= 0 ? (in - 1 - off) / s + 1 : 0;
  lo = imin(lo, out);
  hi = imax(lo, imin(hi, out));
}

}  // namespace

// first_col[ow]: the first in-bounds input column of window ow (PyTorch's initial argmax);
// pos: int32 scratch of OW entries.
void max_pool_plane(const PoolParams& p, const float* x, float* y, int64_t* idx, const int32_t* first_col,
                    int32_t* pos) {
  const float neg_inf = -__builtin_inff();
  for (index_t oh = 0; oh < p.oh; ++oh) {
    float* m = y + oh * p.ow;
    const index_t i0 = first_tap_inside(oh * p.sh - p.ph, p.dh, p.kh);
    const index_t first_row = oh * p.sh - p.ph + i0 * p.dh;
    for (index_t ow = 0; ow < p.ow; ++ow) m[ow] = neg_inf;
    if (idx) {
      for (index_t ow = 0; ow < p.ow; ++ow) pos[ow] = static_cast<int32_t>(first_row * p.w + first_col[ow]);
    }
    const index_t j_end = col_taps(p.kw, p.dw, p.pw, p.w);
    for (index_t i = i0; i < p.kh; ++i) {
      const index_t ih = oh * p.sh - p.ph + i * p.dh;
      if (ih >= p.h) break;
      for (index_t j = 0; j < j_end; ++j) {
        const index_t off = j * p.dw - p.pw;
        index_t lo, hi;
        tap_range(off, p.sw, p.w, p.ow, lo, hi);
        const float* src = x + ih * p.w + off;
        const index_t s = p.sw;
        if (idx) {
          const int32_t base = static_cast<int32_t>(ih * p.w + off);
          const int32_t s32 = static_cast<int32_t>(s);
#pragma omp simd
          for (index_t ow = lo; ow < hi; ++ow) {
            const float v = src[ow * s];
            const bool take = v > m[ow] || v != v;
            m[ow] = take ? v : m[ow];
            pos[ow] = take ? base + static_cast<int32_t>(ow) * s32 : pos[ow];
          }
        } else {
#pragma omp simd
          for (index_t ow = lo; ow < hi; ++ow) {
            const float v = src[ow * s];
            m[ow] = (v > m[ow] || v != v) ? v : m[ow];
          }
        }
      }
    }
    if (idx) {
      int64_t* out = idx + oh * p.ow;
#pragma omp simd
      for (index_t ow = 0; ow < p.ow; ++ow) out[ow] = pos[ow];
    }
  }
}

// y = window sums / (hcnt[oh] * wcnt[ow]) (the divisor factorises in both count modes).
void avg_pool_plane(const PoolParams& p, const float* x, float* y, const float* hcnt, const float* wcnt) {
  const index_t j_end = col_taps(p.kw, 1, p.pw, p.w);
  for (index_t oh = 0; oh < p.oh; ++oh) {
    float* acc = y + oh * p.ow;
    for (index_t ow = 0; ow < p.ow; ++ow) acc[ow] = 0.0f;
    const index_t row0 = oh * p.sh - p.ph;
    for (index_t i = imax(0, -row0), i_end = imin(p.kh, p.h - row0); i < i_end; ++i) {
      const index_t ih = row0 + i;
      for (index_t j = 0; j < j_end; ++j) {
        const index_t off = j - p.pw;
        index_t lo, hi;
        tap_range(off, p.sw, p.w, p.ow, lo, hi);
        const float* src = x + ih * p.w + off;
        const index_t s = p.sw;
#pragma omp simd
        for (index_t ow = lo; ow < hi; ++ow) acc[ow] += src[ow * s];
      }
    }
    const float hc = hcnt[oh];
#pragma omp simd
    for (index_t ow = 0; ow < p.ow; ++ow) acc[ow] = acc[ow] / (hc * wcnt[ow]);
  }
}

// gx (zero-filled here) += gy / divisor spread over each window; row: OW floats of scratch.
void avg_pool_backward_plane(const PoolParams& p, const float* gy, float* gx, const float* hcnt, const float* wcnt,
                             float* row) {
  const index_t j_end = col_taps(p.kw, 1, p.pw, p.w);
  for (index_t i = 0; i < p.h * p.w; ++i) gx[i] = 0.0f;
  for (index_t oh = 0; oh < p.oh; ++oh) {
    const float hc = hcnt[oh];
    const float* g = gy + oh * p.ow;
#pragma omp simd
    for (index_t ow = 0; ow < p.ow; ++ow) row[ow] = g[ow] / (hc * wcnt[ow]);
    const index_t row0 = oh * p.sh - p.ph;
    for (index_t i = imax(0, -row0), i_end = imin(p.kh, p.h - row0); i < i_end; ++i) {
      const index_t ih = row0 + i;
      for (index_t j = 0; j < j_end; ++j) {
        const index_t off = j - p.pw;
        index_t lo, hi;
        tap_range(off, p.sw, p.w, p.ow, lo, hi);
        float* dst = gx + ih * p.w + off;
        const index_t s = p.sw;
#pragma omp simd
        for (index_t ow = lo; ow < hi; ++ow) dst[ow * s] += row[ow];
      }
    }
  }
}

}  // namespace FL_POOL_NS
}  // namespace fl
