// Depthwise convolution (groups == C, K = C * multiplier), one plane at a time, written once
// and compiled per ISA: depthwise.cpp (baseline), depthwise_avx2.cpp, depthwise_avx512.cpp
// include this file with FL_DW_NS set to their own namespace, so the compiler vectorises the
// `omp simd` loops over output columns at that ISA's width. Threading stays in depthwise.cpp
// (baseline code): nothing inline that is shared between translation units is instantiated
// here with wider flags.
//
// Forward: every output pixel whose whole window lies inside the input columns (the
// interior, all but ~padding/stride columns at each edge) is computed in one pass with all
// R*S taps in registers (one store per output instead of one read-modify-write per tap:
// 1.9x at 3x3, 56x56); the edge columns take the bounds-checked scalar path.
#include "conv/conv.h"

#ifndef FL_DW_NS
#error "define FL_DW_NS before including depthwise_impl.h"
#endif

namespace fl {
namespace FL_DW_NS {
namespace {

inline index_t imin(index_t a, index_t b) { return a < b ? a : b; }
inline index_t imax(index_t a, index_t b) { return a > b ? a : b; }
inline index_t cdiv(index_t a, index_t b) { return (a + b - 1) / b; }

// Output columns [lo, hi) whose tap at iw = ow*s + off lies inside [0, in).
inline void tap_range(index_t off, index_t s, index_t in, index_t out, index_t& lo, index_t& hi) {
  lo = off >= 0 ? 0 : cdiv(-off, s);
  hi = in - 1 - off >= 0 ? (in - 1 - off) / s + 1 : 0;
  lo = imin(lo, out);
  hi = imax(lo, imin(hi, out));
}

}  // namespace

// yo (OH x OW) = conv of one input plane xin (H x W) with one filter wk (R x S) + bias.
void dw_forward_plane(const ConvParams& p, const float* xin, const float* wk, float bias, float* yo) {
  // Interior columns: every tap j inside [0, W).
  index_t ilo = 0, ihi = p.ow;
  for (index_t j = 0; j < p.kw; ++j) {
    index_t lo, hi;
    tap_range(j * p.dw - p.pw, p.sw, p.w, p.ow, lo, hi);
    ilo = imax(ilo, lo);
    ihi = imin(ihi, hi);
  }
  if (ihi < ilo) ihi = ilo;
  const float* rows[64];
  const float* taps[64];
  for (index_t oh = 0; oh < p.oh; ++oh) {
    float* out = yo + oh * p.ow;
    // Valid filter rows of this output row.
    index_t nr = 0;
    for (index_t i = 0; i < p.kh && nr < 64; ++i) {
      const index_t ih = oh * p.sh - p.ph + i * p.dh;
      if (ih < 0 || ih >= p.h) continue;
      rows[nr] = xin + ih * p.w - p.pw;
      taps[nr] = wk + i * p.kw;
      ++nr;
    }
    if (p.kh > 64) {  // very tall kernels: per-tap accumulation (no fixed-size arrays)
      for (index_t ow = 0; ow < p.ow; ++ow) out[ow] = bias;
      for (index_t i = 0; i < p.kh; ++i) {
        const index_t ih = oh * p.sh - p.ph + i * p.dh;
        if (ih < 0 || ih >= p.h) continue;
        for (index_t j = 0; j < p.kw; ++j) {
          const index_t off = j * p.dw - p.pw;
          index_t lo, hi;
          tap_range(off, p.sw, p.w, p.ow, lo, hi);
          const float wv = wk[i * p.kw + j];
          const float* src = xin + ih * p.w + off;
          for (index_t ow = lo; ow < hi; ++ow) out[ow] += wv * src[ow * p.sw];
        }
      }
      continue;
    }
    // Edge columns: bounds-checked.
    for (index_t ow = 0; ow < p.ow; ++ow) {
      if (ow == ilo) ow = ihi;
      if (ow >= p.ow) break;
      float acc = bias;
      for (index_t r = 0; r < nr; ++r)
        for (index_t j = 0; j < p.kw; ++j) {
          const index_t iw = ow * p.sw + j * p.dw;  // relative to the padded row start
          if (iw - p.pw >= 0 && iw - p.pw < p.w) acc += taps[r][j] * rows[r][iw];
        }
      out[ow] = acc;
    }
    if (p.sw == 1) {
#pragma omp simd
      for (index_t ow = ilo; ow < ihi; ++ow) {
        float acc = bias;
        for (index_t r = 0; r < nr; ++r) {
          const float* src = rows[r] + ow;
          const float* t = taps[r];
          for (index_t j = 0; j < p.kw; ++j) acc += t[j] * src[j * p.dw];
        }
        out[ow] = acc;
      }
    } else {
#pragma omp simd
      for (index_t ow = ilo; ow < ihi; ++ow) {
        float acc = bias;
        for (index_t r = 0; r < nr; ++r) {
          const float* src = rows[r] + ow * p.sw;
          const float* t = taps[r];
          for (index_t j = 0; j < p.kw; ++j) acc += t[j] * src[j * p.dw];
        }
        out[ow] = acc;
      }
    }
  }
}

// gx (H x W, one input channel) = bias + sum over its `mult` output channels of the scattered
// taps: gx[ih, ow*s + off] += w[i, j] * gy[oh, ow].
void dw_backward_data_plane(const ConvParams& p, const float* gy, const float* w, index_t mult, float bias,
                            float* gx) {
  const index_t hw = p.h * p.w, ohw = p.oh * p.ow;
  for (index_t i = 0; i < hw; ++i) gx[i] = bias;
  for (index_t m = 0; m < mult; ++m) {
    const float* g = gy + m * ohw;
    const float* wk = w + m * p.kh * p.kw;
    for (index_t oh = 0; oh < p.oh; ++oh) {
      const float* grow = g + oh * p.ow;
      for (index_t i = 0; i < p.kh; ++i) {
        const index_t ih = oh * p.sh - p.ph + i * p.dh;
        if (ih < 0 || ih >= p.h) continue;
        for (index_t j = 0; j < p.kw; ++j) {
          const index_t off = j * p.dw - p.pw;
          index_t lo, hi;
          tap_range(off, p.sw, p.w, p.ow, lo, hi);
          const float wv = wk[i * p.kw + j];
          float* dst = gx + ih * p.w + off;
          if (p.sw == 1) {
#pragma omp simd
            for (index_t ow = lo; ow < hi; ++ow) dst[ow] += wv * grow[ow];
          } else {
            for (index_t ow = lo; ow < hi; ++ow) dst[ow * p.sw] += wv * grow[ow];
          }
        }
      }
    }
  }
}

// gwk (R x S) += sum over one image's plane pair: gy plane (OH x OW) (x) x plane (H x W).
// acc is a double R*S scratch the caller sums over the batch.
void dw_backward_weight_plane(const ConvParams& p, const float* gy, const float* x, double* acc) {
  for (index_t oh = 0; oh < p.oh; ++oh) {
    const float* grow = gy + oh * p.ow;
    for (index_t i = 0; i < p.kh; ++i) {
      const index_t ih = oh * p.sh - p.ph + i * p.dh;
      if (ih < 0 || ih >= p.h) continue;
      for (index_t j = 0; j < p.kw; ++j) {
        const index_t off = j * p.dw - p.pw;
        index_t lo, hi;
        tap_range(off, p.sw, p.w, p.ow, lo, hi);
        const float* src = x + ih * p.w + off;
        float s = 0.0f;
        if (p.sw == 1) {
#pragma omp simd reduction(+ : s)
          for (index_t ow = lo; ow < hi; ++ow) s += grow[ow] * src[ow];
        } else {
#pragma omp simd reduction(+ : s)
          for (index_t ow = lo; ow < hi; ++ow) s += grow[ow] * src[ow * p.sw];
        }
        acc[i * p.kw + j] += s;
      }
    }
  }
}

}  // namespace FL_DW_NS
}  // namespace fl
