// Depthwise convolution drivers: threading over planes (baseline code) and the choice of the
// per-ISA plane kernels (depthwise_impl.h compiled three times).
#include <omp.h>

#include <algorithm>
#include <vector>

#include "conv/conv.h"
#include "core/cpu_features.h"
#include "core/parallel.h"

#define FL_DW_NS dw_generic
#include "conv/depthwise_impl.h"
#undef FL_DW_NS

namespace fl {

#define FL_DECLARE_DW(ns)                                                                              \
  namespace ns {                                                                                       \
  void dw_forward_plane(const ConvParams& p, const float* xin, const float* wk, float bias, float* yo); \
  void dw_forward_plane_padded(const ConvParams& p, index_t hp, index_t wp, const float* xin, const float* wk,   \
                               float bias, float* yo, float* xp, float* flat);                                 \
  void dw_forward_plane_flat(const ConvParams& p, const float* xin, const float* wk, float bias, float* yo,         \
                             float* xb, index_t lead, const int* masks, index_t n_pad);                          \
  void dw_backward_data_plane(const ConvParams& p, const float* gy, const float* w, index_t mult,      \
                              float bias, float* gx);                                                  \
  void dw_backward_weight_plane(const ConvParams& p, const float* gy, const float* x, double* acc);    \
  void dw_backward_weight_plane_padded(const ConvParams& p, index_t hp, index_t wp, const float* gy,   \
                                       const float* xin, double* acc, float* xp, float* gyp);          \
  }
#if defined(FASTLAYERS_X86)
FL_DECLARE_DW(dw_avx2)
FL_DECLARE_DW(dw_avx512)
#endif
#undef FL_DECLARE_DW

namespace {

struct DwKernels {
  decltype(&dw_generic::dw_forward_plane) forward;
  decltype(&dw_generic::dw_forward_plane_padded) forward_padded;
  decltype(&dw_generic::dw_forward_plane_flat) forward_flat;
  decltype(&dw_generic::dw_backward_data_plane) backward_data;
  decltype(&dw_generic::dw_backward_weight_plane) backward_weight;
  decltype(&dw_generic::dw_backward_weight_plane_padded) backward_weight_padded;
};

DwKernels kernels() {
#if defined(FASTLAYERS_X86)
  switch (active_isa()) {
    case Isa::avx512:
      return {dw_avx512::dw_forward_plane, dw_avx512::dw_forward_plane_padded, dw_avx512::dw_forward_plane_flat, dw_avx512::dw_backward_data_plane, dw_avx512::dw_backward_weight_plane,
              dw_avx512::dw_backward_weight_plane_padded};
    case Isa::avx2:
      return {dw_avx2::dw_forward_plane, dw_avx2::dw_forward_plane_padded, dw_avx2::dw_forward_plane_flat, dw_avx2::dw_backward_data_plane, dw_avx2::dw_backward_weight_plane,
              dw_avx2::dw_backward_weight_plane_padded};
    default: break;
  }
#endif
  return {dw_generic::dw_forward_plane, dw_generic::dw_forward_plane_padded, dw_generic::dw_forward_plane_flat, dw_generic::dw_backward_data_plane, dw_generic::dw_backward_weight_plane,
              dw_generic::dw_backward_weight_plane_padded};
}

}  // namespace

namespace depthwise {

void forward(const ConvParams& p, const float* x, const float* w, const float* bias, float* y) {
  const DwKernels kern = kernels();
  const index_t mult = p.k / p.c, hw = p.h * p.w, ohw = p.oh * p.ow, taps = p.kh * p.kw;
  const index_t grain = std::max<index_t>(1, (index_t{1} << 16) / std::max<index_t>(1, ohw * taps));
  if (p.sh == 1 && p.sw == 1 && p.ow == p.w && taps <= 64) {
    // Flat path (depthwise_impl.h, dw_flat_plane): one copy of the plane into zeros, masks
    // per kernel column shared by all planes.
    const index_t lead = p.ph * p.w + p.pw;
    const index_t max_off = ((p.kh - 1) * p.dh - p.ph) * p.w + (p.kw - 1) * p.dw - p.pw;
    const index_t n_pad = (ohw + 7) / 8 * 8;
    const index_t each = lead + std::max(hw, n_pad + std::max<index_t>(max_off, 0)) + 8;
    std::vector<int> masks(static_cast<size_t>(p.kw * n_pad));
    for (index_t j = 0; j < p.kw; ++j)
      for (index_t f = 0; f < n_pad; ++f) {
        const index_t iw = f % p.w + j * p.dw - p.pw;
        masks[static_cast<size_t>(j * n_pad + f)] = iw >= 0 && iw < p.w ? -1 : 0;
      }
    const int nt = num_threads();
    std::vector<float> scratch(static_cast<size_t>(each * nt), 0.0f);  // zeros stay zero
    parallel_for(p.n * p.k, grain, [&](index_t b, index_t e) {
      float* xb = scratch.data() + std::min(omp_get_thread_num(), nt - 1) * each;
      for (index_t plane = b; plane < e; ++plane) {
        const index_t n = plane / p.k, k = plane % p.k, c = k / mult;
        kern.forward_flat(p, x + (n * p.c + c) * hw, w + k * taps, bias ? bias[k] : 0.0f, y + plane * ohw, xb, lead,
                          masks.data(), n_pad);
      }
    });
    return;
  }
  if (p.sh == 1 && p.sw == 1 && taps <= 64) {
    // Padded-plane path (depthwise_impl.h): per-thread scratch sized before the region.
    const index_t hp = std::max(p.h + p.ph, p.oh + (p.kh - 1) * p.dh);
    const index_t wp = std::max(p.w + p.pw, p.ow + (p.kw - 1) * p.dw);
    const index_t each = hp * wp + 8 + p.oh * wp + 8;
    const int nt = num_threads();
    std::vector<float> scratch(static_cast<size_t>(each * nt));
    parallel_for(p.n * p.k, grain, [&](index_t b, index_t e) {
      float* xp = scratch.data() + std::min(omp_get_thread_num(), nt - 1) * each;
      float* flat = xp + hp * wp + 8;
      for (index_t plane = b; plane < e; ++plane) {
        const index_t n = plane / p.k, k = plane % p.k, c = k / mult;
        kern.forward_padded(p, hp, wp, x + (n * p.c + c) * hw, w + k * taps, bias ? bias[k] : 0.0f, y + plane * ohw,
                            xp, flat);
      }
    });
    return;
  }
  parallel_for(p.n * p.k, grain, [&](index_t b, index_t e) {
    for (index_t plane = b; plane < e; ++plane) {
      const index_t n = plane / p.k, k = plane % p.k, c = k / mult;
      kern.forward(p, x + (n * p.c + c) * hw, w + k * taps, bias ? bias[k] : 0.0f, y + plane * ohw);
    }
  });
}

void backward_data(const ConvParams& p, const float* gy, const float* w, const float* bias, float* gx) {
  const DwKernels kern = kernels();
  const index_t mult = p.k / p.c, hw = p.h * p.w, ohw = p.oh * p.ow, taps = p.kh * p.kw;
  parallel_for(p.n * p.c, std::max<index_t>(1, (index_t{1} << 16) / std::max<index_t>(1, mult * ohw * taps)),
               [&](index_t b, index_t e) {
                 for (index_t plane = b; plane < e; ++plane) {
                   const index_t n = plane / p.c, c = plane % p.c;
                   kern.backward_data(p, gy + (n * p.k + c * mult) * ohw, w + c * mult * taps, mult,
                                      bias ? bias[c] : 0.0f, gx + plane * hw);
                 }
               });
}

void backward_weight(const ConvParams& p, const float* gy, const float* x, float* gw) {
  const DwKernels kern = kernels();
  const index_t mult = p.k / p.c, hw = p.h * p.w, ohw = p.oh * p.ow, taps = p.kh * p.kw;
  const bool padded = p.sh == 1 && p.sw == 1;
  const index_t hp = std::max(p.h + p.ph, p.oh + (p.kh - 1) * p.dh);
  const index_t wp = std::max(p.w + p.pw, p.ow + (p.kw - 1) * p.dw);
  const index_t each = taps + (padded ? hp * wp + 8 + p.oh * wp + 8 : 0);
  const int nt = num_threads();
  // Per-thread scratch (double accumulators + padded planes), allocated before the region.
  std::vector<double> acc_all(static_cast<size_t>(taps * nt));
  std::vector<float> scratch(static_cast<size_t>(padded ? each * nt : 1));
  parallel_for(p.k, std::max<index_t>(1, (index_t{1} << 16) / std::max<index_t>(1, p.n * ohw * taps)),
               [&](index_t b, index_t e) {
                 const int tid = std::min(omp_get_thread_num(), nt - 1);
                 double* acc = acc_all.data() + tid * taps;
                 float* xp = scratch.data() + (padded ? tid * each : 0);
                 float* gyp = xp + hp * wp + 8;
                 for (index_t k = b; k < e; ++k) {
                   std::fill(acc, acc + taps, 0.0);
                   for (index_t n = 0; n < p.n; ++n) {
                     const float* g = gy + (n * p.k + k) * ohw;
                     const float* xin = x + (n * p.c + k / mult) * hw;
                     if (padded)
                       kern.backward_weight_padded(p, hp, wp, g, xin, acc, xp, gyp);
                     else
                       kern.backward_weight(p, g, xin, acc);
                   }
                   for (index_t t = 0; t < taps; ++t) gw[k * taps + t] = static_cast<float>(acc[t]);
                 }
               });
}

}  // namespace depthwise
}  // namespace fl
