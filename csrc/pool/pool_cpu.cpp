// Pooling drivers: threading over the N*C planes, the per-ISA plane kernels for max/avg
// pooling (pool_impl.h), and the plain loops of the scatter, adaptive and upsample kernels
// (memory-bound gathers/scatters where the compiler's baseline code already streams).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "core/cpu_features.h"
#include "core/parallel.h"
#include "pool/pool.h"

#define FL_POOL_NS pool_generic
#include "pool/pool_impl.h"
#undef FL_POOL_NS

namespace fl {

#define FL_DECLARE_POOL(ns)                                                                                 \
  namespace ns {                                                                                            \
  void max_pool_plane(const PoolParams& p, const float* x, float* y, int64_t* idx, const int32_t* first_col, \
                      int32_t* pos);                                                                        \
  void avg_pool_plane(const PoolParams& p, const float* x, float* y, const float* hcnt, const float* wcnt);  \
  void avg_pool_backward_plane(const PoolParams& p, const float* gy, float* gx, const float* hcnt,          \
                               const float* wcnt, float* row);                                              \
  }
#if defined(FASTLAYERS_X86)
FL_DECLARE_POOL(pool_avx2)
FL_DECLARE_POOL(pool_avx512)
#endif
#undef FL_DECLARE_POOL

namespace {

struct PoolKernels {
  decltype(&pool_generic::max_pool_plane) max_plane;
  decltype(&pool_generic::avg_pool_plane) avg_plane;
  decltype(&pool_generic::avg_pool_backward_plane) avg_backward_plane;
};

PoolKernels kernels() {
#if defined(FASTLAYERS_X86)
  switch (active_isa()) {
    case Isa::avx512:
      return {pool_avx512::max_pool_plane, pool_avx512::avg_pool_plane, pool_avx512::avg_pool_backward_plane};
    case Isa::avx2:
      return {pool_avx2::max_pool_plane, pool_avx2::avg_pool_plane, pool_avx2::avg_pool_backward_plane};
    default: break;
  }
#endif
  return {pool_generic::max_pool_plane, pool_generic::avg_pool_plane, pool_generic::avg_pool_backward_plane};
}

// Planes per thread chunk: at least ~64 KiB of input so a chunk outweighs its scheduling.
index_t plane_grain(const PoolParams& p) {
  return std::max<index_t>(1, (index_t{1} << 14) / std::max<index_t>(1, std::max(p.h * p.w, p.oh * p.ow)));
}

// Per-thread scratch, sized before the parallel region.
template <typename T>
struct PerThread {
  std::vector<T> data;
  index_t each;
  PerThread(index_t n) : data(static_cast<size_t>(std::max<index_t>(1, n) * num_threads())), each(std::max<index_t>(1, n)) {}
  T* get() { return data.data() + std::min<index_t>(omp_get_thread_num(), num_threads() - 1) * each; }
};

// Window counts of avg pooling along one axis (the divisor is hcnt[oh] * wcnt[ow]).
std::vector<float> avg_counts(index_t in, index_t out, index_t k, index_t s, index_t pad, bool include_pad) {
  std::vector<float> cnt(static_cast<size_t>(out));
  for (index_t o = 0; o < out; ++o) {
    index_t start = o * s - pad, end = std::min(start + k, in + pad);
    const index_t padded = end - start;
    start = std::max<index_t>(start, 0);
    end = std::min(end, in);
    cnt[o] = static_cast<float>(include_pad ? padded : end - start);
  }
  return cnt;
}

index_t adaptive_start(index_t i, index_t in, index_t out) { return i * in / out; }
index_t adaptive_end(index_t i, index_t in, index_t out) { return ((i + 1) * in + out - 1) / out; }

}  // namespace

void check_pool_params(const PoolParams& p) {
  FL_CHECK(p.planes >= 0 && p.h >= 1 && p.w >= 1 && p.oh >= 1 && p.ow >= 1, "pool: invalid sizes H=", p.h,
           " W=", p.w, " OH=", p.oh, " OW=", p.ow);
  FL_CHECK(p.kh >= 1 && p.kw >= 1 && p.sh >= 1 && p.sw >= 1 && p.dh >= 1 && p.dw >= 1 && p.ph >= 0 && p.pw >= 0,
           "pool: invalid kernel/stride/padding/dilation");
  FL_CHECK(p.h * p.w < (index_t{1} << 31), "pool: planes of ", p.h, "x", p.w,
           " elements exceed the 2^31 positions the index path tracks");
}

void max_pool2d_forward(const PoolParams& p, const float* x, float* y, int64_t* idx) {
  check_pool_params(p);
  // Every window must hold an in-bounds element (pad <= kernel/2 and PyTorch's ceil_mode rule
  // guarantee it); checked so a bad call is an error rather than a window of -inf.
  for (index_t o : {index_t{0}, p.oh - 1}) {
    const index_t start = o * p.sh - p.ph;
    const index_t i0 = first_tap_inside(start, p.dh, p.kh);
    const bool any = i0 < p.kh && start + i0 * p.dh < p.h;
    FL_CHECK(any, "max_pool2d: output row ", o, " has a window entirely in the padding");
  }
  std::vector<int32_t> first_col(static_cast<size_t>(p.ow));
  for (index_t ow = 0; ow < p.ow; ++ow) {
    const index_t j = std::min(first_tap_inside(ow * p.sw - p.pw, p.dw, p.kw), p.kw - 1);
    const index_t iw = ow * p.sw - p.pw + j * p.dw;
    FL_CHECK(iw >= 0 && iw < p.w, "max_pool2d: output column ", ow, " has a window entirely in the padding");
    first_col[ow] = static_cast<int32_t>(iw);
  }
  const PoolKernels kern = kernels();
  PerThread<int32_t> pos(p.ow);
  const index_t hw = p.h * p.w, ohw = p.oh * p.ow;
  parallel_for(p.planes, plane_grain(p), [&](index_t b, index_t e) {
    int32_t* scratch = pos.get();
    for (index_t q = b; q < e; ++q)
      kern.max_plane(p, x + q * hw, y + q * ohw, idx ? idx + q * ohw : nullptr, first_col.data(), scratch);
  });
}

void max_pool2d_backward(const PoolParams& p, const float* gy, const int64_t* idx, float* gx) {
  FL_CHECK(p.planes >= 0 && p.h >= 1 && p.w >= 1 && p.oh >= 0 && p.ow >= 0, "max_pool2d_backward: invalid sizes");
  const index_t hw = p.h * p.w, ohw = p.oh * p.ow;
  std::atomic<bool> bad{false};
  parallel_for(p.planes, plane_grain(p), [&](index_t b, index_t e) {
    for (index_t q = b; q < e; ++q) {
      float* g = gx + q * hw;
      std::fill(g, g + hw, 0.0f);
      const int64_t* id = idx + q * ohw;
      const float* src = gy + q * ohw;
      for (index_t i = 0; i < ohw; ++i) {
        const int64_t t = id[i];
        if (t < 0 || t >= hw) {
          bad.store(true, std::memory_order_relaxed);
          continue;
        }
        g[t] += src[i];
      }
    }
  });
  FL_CHECK(!bad.load(), "indices: an index lies outside [0, H*W) = [0, ", hw,
           "); pass the indices returned by the forward call with the same x");
}

void avg_pool2d_forward(const PoolParams& p, bool count_include_pad, const float* x, float* y) {
  check_pool_params(p);
  const std::vector<float> hc = avg_counts(p.h, p.oh, p.kh, p.sh, p.ph, count_include_pad);
  const std::vector<float> wc = avg_counts(p.w, p.ow, p.kw, p.sw, p.pw, count_include_pad);
  const PoolKernels kern = kernels();
  const index_t hw = p.h * p.w, ohw = p.oh * p.ow;
  parallel_for(p.planes, plane_grain(p), [&](index_t b, index_t e) {
    for (index_t q = b; q < e; ++q) kern.avg_plane(p, x + q * hw, y + q * ohw, hc.data(), wc.data());
  });
}

void avg_pool2d_backward(const PoolParams& p, bool count_include_pad, const float* gy, float* gx) {
  check_pool_params(p);
  const std::vector<float> hc = avg_counts(p.h, p.oh, p.kh, p.sh, p.ph, count_include_pad);
  const std::vector<float> wc = avg_counts(p.w, p.ow, p.kw, p.sw, p.pw, count_include_pad);
  const PoolKernels kern = kernels();
  PerThread<float> row(p.ow);
  const index_t hw = p.h * p.w, ohw = p.oh * p.ow;
  parallel_for(p.planes, plane_grain(p), [&](index_t b, index_t e) {
    float* scratch = row.get();
    for (index_t q = b; q < e; ++q) kern.avg_backward_plane(p, gy + q * ohw, gx + q * hw, hc.data(), wc.data(), scratch);
  });
}

void adaptive_avg_pool2d_forward(const PoolParams& p, const float* x, float* y) {
  check_pool_params(p);
  const index_t hw = p.h * p.w, ohw = p.oh * p.ow;
  if (ohw == 1) {  // global pooling: one contiguous sum per plane (4x faster at 7x7 than windows)
    parallel_for(p.planes, plane_grain(p), [&](index_t b, index_t e) {
      for (index_t q = b; q < e; ++q) {
        const float* src = x + q * hw;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (index_t i = 0; i < hw; ++i) s += src[i];
        y[q] = s / static_cast<float>(hw);
      }
    });
    return;
  }
  parallel_for(p.planes, plane_grain(p), [&](index_t b, index_t e) {
    for (index_t q = b; q < e; ++q) {
      const float* src = x + q * hw;
      float* dst = y + q * ohw;
      for (index_t oh = 0; oh < p.oh; ++oh) {
        const index_t h0 = adaptive_start(oh, p.h, p.oh), h1 = adaptive_end(oh, p.h, p.oh);
        for (index_t ow = 0; ow < p.ow; ++ow) {
          const index_t w0 = adaptive_start(ow, p.w, p.ow), w1 = adaptive_end(ow, p.w, p.ow);
          float s = 0.0f;
          for (index_t ih = h0; ih < h1; ++ih) {
            const float* r = src + ih * p.w;
#pragma omp simd reduction(+ : s)
            for (index_t iw = w0; iw < w1; ++iw) s += r[iw];
          }
          dst[oh * p.ow + ow] = s / static_cast<float>((h1 - h0) * (w1 - w0));
        }
      }
    }
  });
}

void adaptive_avg_pool2d_backward(const PoolParams& p, const float* gy, float* gx) {
  check_pool_params(p);
  const index_t hw = p.h * p.w, ohw = p.oh * p.ow;
  parallel_for(p.planes, plane_grain(p), [&](index_t b, index_t e) {
    for (index_t q = b; q < e; ++q) {
      const float* g = gy + q * ohw;
      float* dst = gx + q * hw;
      std::fill(dst, dst + hw, 0.0f);
      for (index_t oh = 0; oh < p.oh; ++oh) {
        const index_t h0 = adaptive_start(oh, p.h, p.oh), h1 = adaptive_end(oh, p.h, p.oh);
        for (index_t ow = 0; ow < p.ow; ++ow) {
          const index_t w0 = adaptive_start(ow, p.w, p.ow), w1 = adaptive_end(ow, p.w, p.ow);
          const float v = g[oh * p.ow + ow] / static_cast<float>((h1 - h0) * (w1 - w0));
          for (index_t ih = h0; ih < h1; ++ih) {
            float* r = dst + ih * p.w;
#pragma omp simd
            for (index_t iw = w0; iw < w1; ++iw) r[iw] += v;
          }
        }
      }
    }
  });
}

void adaptive_max_pool2d_forward(const PoolParams& p, const float* x, float* y, int64_t* idx) {
  check_pool_params(p);
  const index_t hw = p.h * p.w, ohw = p.oh * p.ow;
  parallel_for(p.planes, plane_grain(p), [&](index_t b, index_t e) {
    for (index_t q = b; q < e; ++q) {
      const float* src = x + q * hw;
      for (index_t oh = 0; oh < p.oh; ++oh) {
        const index_t h0 = adaptive_start(oh, p.h, p.oh), h1 = adaptive_end(oh, p.h, p.oh);
        for (index_t ow = 0; ow < p.ow; ++ow) {
          const index_t w0 = adaptive_start(ow, p.w, p.ow), w1 = adaptive_end(ow, p.w, p.ow);
          float m = -std::numeric_limits<float>::infinity();
          index_t best = h0 * p.w + w0;
          for (index_t ih = h0; ih < h1; ++ih)
            for (index_t iw = w0; iw < w1; ++iw) {
              const float v = src[ih * p.w + iw];
              if (v > m || std::isnan(v)) {
                m = v;
                best = ih * p.w + iw;
              }
            }
          y[q * ohw + oh * p.ow + ow] = m;
          if (idx) idx[q * ohw + oh * p.ow + ow] = best;
        }
      }
    }
  });
}

void upsample_nearest2d_forward(const PoolParams& p, const float* x, float* y) {
  check_pool_params(p);
  const index_t hw = p.h * p.w, ohw = p.oh * p.ow;
  parallel_for(p.planes, plane_grain(p), [&](index_t b, index_t e) {
    for (index_t q = b; q < e; ++q) {
      for (index_t ih = 0; ih < p.h; ++ih) {
        const float* src = x + q * hw + ih * p.w;
        float* first = y + q * ohw + ih * p.sh * p.ow;
        for (index_t iw = 0; iw < p.w; ++iw)
          for (index_t r = 0; r < p.sw; ++r) first[iw * p.sw + r] = src[iw];
        for (index_t r = 1; r < p.sh; ++r) std::copy(first, first + p.ow, first + r * p.ow);
      }
    }
  });
}

void upsample_nearest2d_backward(const PoolParams& p, const float* gy, float* gx) {
  check_pool_params(p);
  const index_t hw = p.h * p.w, ohw = p.oh * p.ow;
  parallel_for(p.planes, plane_grain(p), [&](index_t b, index_t e) {
    for (index_t q = b; q < e; ++q) {
      for (index_t ih = 0; ih < p.h; ++ih) {
        float* dst = gx + q * hw + ih * p.w;
        for (index_t iw = 0; iw < p.w; ++iw) dst[iw] = 0.0f;
        for (index_t r = 0; r < p.sh; ++r) {
          const float* g = gy + q * ohw + (ih * p.sh + r) * p.ow;
          for (index_t iw = 0; iw < p.w; ++iw) {
            float s = 0.0f;
            for (index_t c = 0; c < p.sw; ++c) s += g[iw * p.sw + c];
            dst[iw] += s;
          }
        }
      }
    }
  });
}

}  // namespace fl
