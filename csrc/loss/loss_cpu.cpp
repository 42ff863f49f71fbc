// Loss drivers: threading, target validation, reductions. Sums are per-thread doubles added
// in thread order: the same result for the same thread count, no atomics.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "loss/loss.h"

namespace fl {
namespace {

constexpr index_t kGrainElems = 1 << 15;  // elements per thread before a split pays

// body(thread, begin, end) over [0, units); returns the per-thread double results summed.
template <class F>
double parallel_sum(index_t units, index_t grain, F&& body) {
  const int nt = threads_for(units, grain);
  if (nt <= 1) return units > 0 ? body(index_t{0}, units) : 0.0;
  std::vector<double> part(nt, 0.0);
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const index_t b = units * t / T, e = units * (t + 1) / T;
    if (b < e) part[t] = body(b, e);
  }
  double s = 0.0;
  for (double v : part) s += v;
  return s;
}

// PyTorch's BCE: log terms clamped at -100 so that x = 0 or 1 gives a finite loss.
inline float bce_f(float x, float t) {
  const float lx = std::max(std::log(x), -100.0f);
  const float l1x = std::max(std::log1p(-x), -100.0f);
  return (t - 1.0f) * l1x - t * lx;
}

// max(x, 0) - x t + log1p(exp(-|x|)): no overflow for any finite x.
inline float bce_logits_f(float x, float t) {
  return std::max(x, 0.0f) - x * t + std::log1p(std::exp(-std::abs(x)));
}

inline float sigmoid_f(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
  const float e = std::exp(x);
  return e / (1.0f + e);
}

}  // namespace

double pointwise_loss_forward(PointwiseLoss kind, const float* x, const float* t, float* out, index_t n) {
  std::atomic<bool> bad{false};
  const double total = parallel_sum(n, kGrainElems, [&](index_t b, index_t e) {
    double s = 0.0;
    switch (kind) {
      case PointwiseLoss::mse:
        for (index_t i0 = b; i0 < e; i0 += 512) {
          const index_t i1 = std::min(e, i0 + 512);
          float a = 0.0f;
          if (out) {
#pragma omp simd reduction(+ : a)
            for (index_t i = i0; i < i1; ++i) {
              const float d = x[i] - t[i];
              out[i] = d * d;
              a += d * d;
            }
          } else {
#pragma omp simd reduction(+ : a)
            for (index_t i = i0; i < i1; ++i) {
              const float d = x[i] - t[i];
              a += d * d;
            }
          }
          s += a;
        }
        break;
      case PointwiseLoss::bce: {
        bool local_bad = false;
        for (index_t i = b; i < e; ++i) {
          local_bad |= !(x[i] >= 0.0f && x[i] <= 1.0f);
          const float l = bce_f(x[i], t[i]);
          if (out) out[i] = l;
          s += l;
        }
        if (local_bad) bad = true;
        break;
      }
      case PointwiseLoss::bce_with_logits:
        for (index_t i = b; i < e; ++i) {
          const float l = bce_logits_f(x[i], t[i]);
          if (out) out[i] = l;
          s += l;
        }
        break;
    }
    return s;
  });
  FL_CHECK(!bad, "input: binary_cross_entropy expects probabilities in [0, 1]; got a value outside it "
                 "(use binary_cross_entropy_with_logits for raw scores)");
  return total;
}

void pointwise_loss_backward(PointwiseLoss kind, const float* x, const float* t, const float* g, float gscale,
                             float* gx, index_t n) {
  // One loop per (loss, per-element or scalar grad): the switch outside keeps each a straight
  // (vectorisable, for mse) loop.
  auto run = [&](auto dloss) {
    parallel_for(n, kGrainElems, [&](index_t b, index_t e) {
      if (g) {
        for (index_t i = b; i < e; ++i) gx[i] = g[i] * dloss(x[i], t[i]);
      } else {
        for (index_t i = b; i < e; ++i) gx[i] = gscale * dloss(x[i], t[i]);
      }
    });
  };
  switch (kind) {
    case PointwiseLoss::mse: run([](float xi, float ti) { return 2.0f * (xi - ti); }); break;
    // PyTorch: (x - t) / max((1 - x) x, 1e-12)
    case PointwiseLoss::bce:
      run([](float xi, float ti) { return (xi - ti) / std::max((1.0f - xi) * xi, 1e-12f); });
      break;
    case PointwiseLoss::bce_with_logits: run([](float xi, float ti) { return sigmoid_f(xi) - ti; }); break;
  }
}

namespace {

void check_targets(const CrossEntropyParams& p) {
  const index_t m = p.n * p.s;
  for (index_t i = 0; i < m; ++i) {
    const int64_t t = p.target[i];
    if (t == p.ignore_index) continue;
    FL_CHECK(t >= 0 && t < p.c, "target: class index ", t, " at flat position ", i, " is out of range [0, ", p.c,
             ") (and is not ignore_index=", p.ignore_index, ")");
  }
}

constexpr index_t kPlaneBlock = 256;  // positions of an (N, C, S) plane per work unit

}  // namespace

CrossEntropySum cross_entropy_forward(const CrossEntropyParams& p, float* out) {
  check_targets(p);
  const LossRowKernels& K = loss_row_kernels();
  const index_t C = p.c, S = p.s;
  const float eps = p.label_smoothing;
  CrossEntropySum r;
  for (index_t i = 0; i < p.n * S; ++i) r.count += p.target[i] != p.ignore_index;
  auto loss_of = [&](float lse, float zt, double sum_z) {
    return (1.0f - eps) * (lse - zt) + eps * static_cast<float>(static_cast<double>(lse) - sum_z / C);
  };
  if (S == 1) {
    r.total = parallel_sum(p.n, std::max<index_t>(1, kGrainElems / std::max<index_t>(C, 1)), [&](index_t b, index_t e) {
      double s = 0.0;
      for (index_t i = b; i < e; ++i) {
        const int64_t t = p.target[i];
        float l = 0.0f;
        if (t != p.ignore_index) {
          double sz = 0.0;
          const float* z = p.logits + i * C;
          const float lse = K.row_lse(z, C, &sz);  // sets sz: call it before reading sz
          l = loss_of(lse, z[t], sz);
        }
        if (out) out[i] = l;
        s += l;
      }
      return s;
    });
    return r;
  }
  const index_t blocks = (S + kPlaneBlock - 1) / kPlaneBlock;
  r.total = parallel_sum(p.n * blocks, std::max<index_t>(1, kGrainElems / (C * kPlaneBlock)), [&](index_t b, index_t e) {
    double s = 0.0;
    float lse[kPlaneBlock], sz[kPlaneBlock];
    for (index_t u = b; u < e; ++u) {
      const index_t n = u / blocks, j0 = (u % blocks) * kPlaneBlock, len = std::min(kPlaneBlock, S - j0);
      const float* z = p.logits + n * C * S + j0;
      K.plane_lse(z, C, S, len, lse, sz);
      for (index_t j = 0; j < len; ++j) {
        const index_t pos = n * S + j0 + j;
        const int64_t t = p.target[pos];
        float l = 0.0f;
        if (t != p.ignore_index) l = loss_of(lse[j], z[t * S + j], sz[j]);
        if (out) out[pos] = l;
        s += l;
      }
    }
    return s;
  });
  return r;
}

void cross_entropy_backward(const CrossEntropyParams& p, const float* g, float gscale, float* grad) {
  check_targets(p);
  const LossRowKernels& K = loss_row_kernels();
  const index_t C = p.c, S = p.s;
  if (S == 1) {
    parallel_for(p.n, std::max<index_t>(1, kGrainElems / std::max<index_t>(C, 1)), [&](index_t b, index_t e) {
      for (index_t i = b; i < e; ++i) {
        const int64_t t = p.target[i];
        float* gz = grad + i * C;
        if (t == p.ignore_index) {
          std::fill(gz, gz + C, 0.0f);
          continue;
        }
        double sz = 0.0;
        const float* z = p.logits + i * C;
        K.row_grad(z, C, K.row_lse(z, C, &sz), g ? g[i] : gscale, t, p.label_smoothing, gz);
      }
    });
    return;
  }
  const index_t blocks = (S + kPlaneBlock - 1) / kPlaneBlock;
  parallel_for(p.n * blocks, std::max<index_t>(1, kGrainElems / (C * kPlaneBlock)), [&](index_t b, index_t e) {
    float lse[kPlaneBlock], sz[kPlaneBlock], a[kPlaneBlock];
    for (index_t u = b; u < e; ++u) {
      const index_t n = u / blocks, j0 = (u % blocks) * kPlaneBlock, len = std::min(kPlaneBlock, S - j0);
      const float* z = p.logits + n * C * S + j0;
      const int64_t* t = p.target + n * S + j0;
      K.plane_lse(z, C, S, len, lse, sz);
      for (index_t j = 0; j < len; ++j) a[j] = t[j] == p.ignore_index ? 0.0f : (g ? g[n * S + j0 + j] : gscale);
      K.plane_grad(z, C, S, len, lse, a, t, p.label_smoothing, grad + n * C * S + j0);
    }
  });
}

}  // namespace fl
