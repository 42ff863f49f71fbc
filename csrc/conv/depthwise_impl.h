// Depthwise convolution (groups == C, K = C * multiplier), one plane at a time, written once
// and compiled per ISA: depthwise.cpp (baseline), depthwise_avx2.cpp, depthwise_avx512.cpp
// include this file with FL_DW_NS set to their own namespace, so the compiler vectorises the
// `omp simd` loops over output columns at that ISA's width. Threading stays in depthwise.cpp
// (baseline code): nothing inline that is shared between translation units is instantiated
// here with wider flags.
//
// Forward: every output pixel whose whole window lies inside the input columns (the
// interior, all but ~padding/stride columns at each edge) is computed 8 at a time with all
// R*S taps accumulated in a register (GCC vector extensions: 8 floats, one ymm under -mavx2,
// two xmm in the baseline build; stride 2 de-interleaves two loads). The first version left
// this loop to `omp simd` over a runtime tap list and the compiler did not vectorise it:
// 2.6 GFLOP/s at 128x56x56 vs PyTorch's 12. The edge columns take the bounds-checked path.
#include "conv/conv.h"

#ifndef FL_DW_NS
#error "define FL_DW_NS before including depthwise_impl.h"
#endif

#include "conv/vec8.h"

namespace fl {
namespace FL_DW_NS {
namespace {

using namespace conv_vec8;

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
    index_t ow = ilo;
    if (p.sw == 1) {
      for (; ow + 8 <= ihi; ow += 8) {
        v8 acc = splat8(bias);
        for (index_t r = 0; r < nr; ++r) {
          const float* src = rows[r] + ow;
          const float* t = taps[r];
          for (index_t j = 0; j < p.kw; ++j) acc += splat8(t[j]) * loadu8(src + j * p.dw);
        }
        storeu8(out + ow, acc);
      }
    } else if (p.sw == 2) {
      const v8i evens = {0, 2, 4, 6, 8, 10, 12, 14};
      // The second load reaches 15 floats past the first tap: only while it stays in the row.
      for (; ow + 8 <= ihi && (ow + 7) * 2 + 1 + (p.kw - 1) * p.dw - p.pw < p.w; ow += 8) {
        v8 acc = splat8(bias);
        for (index_t r = 0; r < nr; ++r) {
          const float* src = rows[r] + ow * 2;
          const float* t = taps[r];
          for (index_t j = 0; j < p.kw; ++j) {
            const float* q = src + j * p.dw;
            acc += splat8(t[j]) * __builtin_shuffle(loadu8(q), loadu8(q + 8), evens);
          }
        }
        storeu8(out + ow, acc);
      }
    }
    for (; ow < ihi; ++ow) {
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

// Stride 1: the plane is copied into a zero-padded buffer xp (Hp x Wp, plus 8 floats of
// slack) and the outputs are numbered on the padded width, f = oh*Wp + ow, so every output is
// "interior": tap (i, j) of output f is xp[f + i*dh*Wp + j*dw], 8 outputs per vector load,
// no edge code (at 14x14 the edge columns were half the row: 4 GFLOP/s vs PyTorch's 20).
// flat (OH*Wp + 8 floats) receives the padded-width outputs, copied to yo without the
// Wp - OW discarded columns.
void dw_forward_plane_padded(const ConvParams& p, index_t hp, index_t wp, const float* xin, const float* wk,
                             float bias, float* yo, float* xp, float* flat) {
  const index_t taps = p.kh * p.kw;
  for (index_t i = 0; i < p.ph * wp; ++i) xp[i] = 0.0f;
  for (index_t ih = 0; ih < p.h; ++ih) {
    float* row = xp + (ih + p.ph) * wp;
    for (index_t iw = 0; iw < p.pw; ++iw) row[iw] = 0.0f;
    __builtin_memcpy(row + p.pw, xin + ih * p.w, sizeof(float) * p.w);
    for (index_t iw = p.pw + p.w; iw < wp; ++iw) row[iw] = 0.0f;
  }
  for (index_t i = (p.h + p.ph) * wp; i < hp * wp + 8; ++i) xp[i] = 0.0f;
  index_t off[64];
  float wt[64];
  const index_t nt = taps < 64 ? taps : 64;
  for (index_t r = 0; r < nt; ++r) {
    off[r] = (r / p.kw) * p.dh * wp + (r % p.kw) * p.dw;
    wt[r] = wk[r];
  }
  const index_t n_flat = p.oh * wp;
  for (index_t f = 0; f < n_flat; f += 8) {
    v8 acc = splat8(bias);
    const float* src = xp + f;
    for (index_t r = 0; r < nt; ++r) acc += splat8(wt[r]) * loadu8(src + off[r]);
    storeu8(flat + f, acc);
  }
  for (index_t oh = 0; oh < p.oh; ++oh) __builtin_memcpy(yo + oh * p.ow, flat + oh * wp, sizeof(float) * p.ow);
}

// Stride 1 with OW == W (the "same" convolutions of MobileNets): input and output share the
// flat numbering f = oh*W + ow, so tap (i, j) of output f is x[f + (i*dh - ph)*W + j*dw - pw]
// whenever its column lies inside [0, W): 8 outputs per vector load across row ends, no
// discarded columns. The kh taps of column j are summed, then lanes whose column falls
// outside the row are cleared with a bitwise mask (so a wrapped Inf or NaN is cleared too,
// not multiplied by zero); rows above and below the plane read the
// zeros around it in xb. The padded path above copied 2 x 14 rows of 56 bytes per 14x14
// plane (a libc memcpy each) and computed 16 columns for 14: 0.63 ms at 8x512x14x14 vs
// PyTorch's 0.40.
//   xb: lead zeros, the plane (one copy), zeros after (the caller zeroes both once);
//   masks: kw rows of n_pad lane masks (~0 or 0), n_pad = OH*W rounded up to 8.
template <int KH, int KW>
void dw_flat_plane(const ConvParams& p, const float* xin, const float* wk, float bias, float* yo, float* xb,
                   index_t lead, const int* masks, index_t n_pad) {
  const index_t kh = KH ? KH : p.kh, kw = KW ? KW : p.kw, taps = kh * kw;
  __builtin_memcpy(xb + lead, xin, sizeof(float) * p.h * p.w);
  constexpr int NT = KH * KW ? KH * KW : 64;
  index_t off[NT];
  v8 wt[NT];
  for (index_t r = 0; r < taps; ++r) {
    off[r] = lead + ((r / kw) * p.dh - p.ph) * p.w + (r % kw) * p.dw - p.pw;
    wt[r] = splat8(wk[r]);
  }
  const index_t n_out = p.oh * p.w, n_full = n_out / 8 * 8;
  const v8 vb = splat8(bias);
  // Per column j: the kh taps summed, then masked once (a wrapped Inf or NaN is cleared too).
  auto one = [&](index_t f) {
    v8 acc = vb;
#pragma GCC unroll 16
    for (index_t j = 0; j < kw; ++j) {
      v8 s = wt[j] * loadu8(xb + f + off[j]);
#pragma GCC unroll 16
      for (index_t i = 1; i < kh; ++i) s += wt[i * kw + j] * loadu8(xb + f + off[i * kw + j]);
      v8i m;
      __builtin_memcpy(&m, masks + j * n_pad + f, sizeof(m));
      acc += (v8)((v8i)s & m);
    }
    return acc;
  };
  for (index_t f = 0; f < n_full; f += 8) storeu8(yo + f, one(f));
  if (n_full < n_out) {
    float tail[8];
    storeu8(tail, one(n_full));
    for (index_t e = 0; e < n_out - n_full; ++e) yo[n_full + e] = tail[e];
  }
}

void dw_forward_plane_flat(const ConvParams& p, const float* xin, const float* wk, float bias, float* yo, float* xb,
                           index_t lead, const int* masks, index_t n_pad) {
  if (p.kh == 3 && p.kw == 3) return dw_flat_plane<3, 3>(p, xin, wk, bias, yo, xb, lead, masks, n_pad);
  if (p.kh == 5 && p.kw == 5) return dw_flat_plane<5, 5>(p, xin, wk, bias, yo, xb, lead, masks, n_pad);
  dw_flat_plane<0, 0>(p, xin, wk, bias, yo, xb, lead, masks, n_pad);
}

// Stride-1 weight gradient on the same padded layout: gyp holds gy on the padded width (zero
// in the discarded columns), so tap r's gradient is one contiguous dot product,
// sum_f gyp[f] * xp[f + off[r]], all taps accumulated 8 lanes at a time (the per-row
// version ran 14-float dot products at 14x14: 4x slower than PyTorch). acc: taps doubles.
void dw_backward_weight_plane_padded(const ConvParams& p, index_t hp, index_t wp, const float* gy, const float* xin,
                                     double* acc, float* xp, float* gyp) {
  const index_t taps = p.kh * p.kw;
  for (index_t i = 0; i < p.ph * wp; ++i) xp[i] = 0.0f;
  for (index_t ih = 0; ih < p.h; ++ih) {
    float* row = xp + (ih + p.ph) * wp;
    for (index_t iw = 0; iw < p.pw; ++iw) row[iw] = 0.0f;
    __builtin_memcpy(row + p.pw, xin + ih * p.w, sizeof(float) * p.w);
    for (index_t iw = p.pw + p.w; iw < wp; ++iw) row[iw] = 0.0f;
  }
  for (index_t i = (p.h + p.ph) * wp; i < hp * wp + 8; ++i) xp[i] = 0.0f;
  const index_t n_flat = p.oh * wp, n_pad = (n_flat + 7) / 8 * 8;
  for (index_t oh = 0; oh < p.oh; ++oh) {
    float* row = gyp + oh * wp;
    __builtin_memcpy(row, gy + oh * p.ow, sizeof(float) * p.ow);
    for (index_t ow = p.ow; ow < wp; ++ow) row[ow] = 0.0f;
  }
  for (index_t f = n_flat; f < n_pad; ++f) gyp[f] = 0.0f;
  for (index_t r0 = 0; r0 < taps; r0 += 16) {
    const index_t nt = taps - r0 < 16 ? taps - r0 : 16;
    index_t off[16];
    v8 sum[16];
    for (index_t r = 0; r < nt; ++r) {
      off[r] = ((r0 + r) / p.kw) * p.dh * wp + ((r0 + r) % p.kw) * p.dw;
      sum[r] = splat8(0.0f);
    }
    for (index_t f = 0; f < n_pad; f += 8) {
      const v8 g = loadu8(gyp + f);
      for (index_t r = 0; r < nt; ++r) sum[r] += g * loadu8(xp + f + off[r]);
    }
    for (index_t r = 0; r < nt; ++r) {
      double t = 0.0;
      for (int l = 0; l < 8; ++l) t += sum[r][l];
      acc[r0 + r] += t;
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
