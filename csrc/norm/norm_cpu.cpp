// Batch-norm and layer-norm drivers: threading and per-channel bookkeeping; the inner loops
// are the per-ISA row kernels (norm_rows_impl.h).
//
// Batch norm statistics are one pass over x: shifted sums s1 = sum(x - k), s2 = sum((x - k)^2)
// per channel with k = x[0, c, 0], so var = s2/M - (s1/M)^2 cancels only as much as the
// channel's mean is off its first value in standard deviations (a few, not the 1e4 that an
// unshifted sum of squares loses on data with mean 100 and std 1). Threads own ranges of
// (n, c) rows and keep private double accumulators per channel, added at the end: no atomics
// and the same result for the same thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "norm/norm.h"

namespace fl {
namespace {

constexpr index_t kGrainElems = 1 << 15;  // elements per thread before a split pays

// Run body(thread, begin, end) over [0, units) with the thread index, for private accumulators.
template <class F>
int parallel_units(index_t units, index_t grain, F&& body, int nt) {
  if (nt <= 1) {
    body(0, index_t{0}, units);
    return 1;
  }
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const index_t b = units * t / T, e = units * (t + 1) / T;
    if (b < e) body(static_cast<int>(t), b, e);
  }
  return nt;
}

// Per-channel double sums a[c], b[c] over an (N, C, S) layout. rowfn(c, offset, len, &a, &b)
// handles one contiguous (n, c) row when S > 1; vecfn(offset, a, b) one (C) row when S == 1.
template <class RowFn, class VecFn>
void channel_sums(index_t n, index_t c, index_t s, double* a, double* b, RowFn rowfn, VecFn vecfn) {
  std::fill(a, a + c, 0.0);
  std::fill(b, b + c, 0.0);
  const bool rows = s > 1;
  const index_t units = rows ? n * c : n;
  const index_t unit_len = rows ? s : c;
  const int nt = threads_for(units, std::max<index_t>(1, kGrainElems / std::max<index_t>(unit_len, 1)));
  std::vector<double> acc(static_cast<size_t>(nt) * 2 * c, 0.0);
  parallel_units(
      units, 1,
      [&](int t, index_t ub, index_t ue) {
        double* ta = acc.data() + static_cast<size_t>(t) * 2 * c;
        double* tb = ta + c;
        for (index_t u = ub; u < ue; ++u) {
          if (rows) {
            const index_t ch = u % c;
            rowfn(ch, u * s, s, ta + ch, tb + ch);
          } else {
            vecfn(u * c, ta, tb);
          }
        }
      },
      nt);
  for (int t = 0; t < nt; ++t) {
    const double* ta = acc.data() + static_cast<size_t>(t) * 2 * c;
    for (index_t j = 0; j < c; ++j) {
      a[j] += ta[j];
      b[j] += ta[c + j];
    }
  }
}

// out = x * scale[c] + shift[c] over (N, C, S), or the two-input form for the backward.
template <class RowFn, class VecFn>
void channel_map(index_t n, index_t c, index_t s, RowFn rowfn, VecFn vecfn) {
  const bool rows = s > 1;
  const index_t units = rows ? n * c : n;
  const index_t unit_len = rows ? s : c;
  parallel_for(units, std::max<index_t>(1, kGrainElems / std::max<index_t>(unit_len, 1)),
               [&](index_t ub, index_t ue) {
                 for (index_t u = ub; u < ue; ++u) {
                   if (rows) rowfn(u % c, u * s, s);
                   else vecfn(u * c);
                 }
               });
}

}  // namespace

void batch_norm_forward(const BatchNormParams& p) {
  const NormRowKernels& K = norm_row_kernels();
  const index_t N = p.n, C = p.c, S = p.s, M = N * S;
  std::vector<float> mean(C), invstd(C);
  if (p.training) {
    FL_CHECK(M > 1 || M == 0, "batch_norm: expected more than 1 value per channel when training, got ", M);
    if (M == 0) {
      std::fill(mean.begin(), mean.end(), 0.0f);
      std::fill(invstd.begin(), invstd.end(), static_cast<float>(1.0 / std::sqrt(static_cast<double>(p.eps))));
    } else {
      std::vector<float> k(C);
      for (index_t j = 0; j < C; ++j) k[j] = p.x[j * S];
      std::vector<double> s1(C), s2(C);
      channel_sums(
          N, C, S, s1.data(), s2.data(),
          [&](index_t ch, index_t off, index_t len, double* a, double* b) { K.sums_shift(p.x + off, len, k[ch], a, b); },
          [&](index_t off, double* a, double* b) { K.sums_shift_vec(p.x + off, k.data(), a, b, C); });
      for (index_t j = 0; j < C; ++j) {
        const double d = s1[j] / static_cast<double>(M);
        const double var = std::max(0.0, s2[j] / static_cast<double>(M) - d * d);
        mean[j] = static_cast<float>(k[j] + d);
        invstd[j] = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(p.eps)));
        const float unbiased = static_cast<float>(var * static_cast<double>(M) / static_cast<double>(M - 1));
        if (p.running_mean) p.running_mean[j] = p.momentum * mean[j] + (1.0f - p.momentum) * p.running_mean[j];
        if (p.running_var) p.running_var[j] = p.momentum * unbiased + (1.0f - p.momentum) * p.running_var[j];
      }
    }
  } else {
    FL_CHECK(p.running_mean && p.running_var, "batch_norm: eval mode needs running_mean and running_var");
    for (index_t j = 0; j < C; ++j) {
      mean[j] = p.running_mean[j];
      invstd[j] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(p.running_var[j]) + p.eps));
    }
  }
  if (p.save_mean) std::copy(mean.begin(), mean.end(), p.save_mean);
  if (p.save_invstd) std::copy(invstd.begin(), invstd.end(), p.save_invstd);
  if (M == 0) return;
  std::vector<float> scale(C), shift(C);
  for (index_t j = 0; j < C; ++j) {
    scale[j] = invstd[j] * (p.weight ? p.weight[j] : 1.0f);
    shift[j] = (p.bias ? p.bias[j] : 0.0f) - mean[j] * scale[j];
  }
  channel_map(
      N, C, S, [&](index_t ch, index_t off, index_t len) { K.affine(p.x + off, p.y + off, len, scale[ch], shift[ch]); },
      [&](index_t off) { K.affine_vec(p.x + off, p.y + off, scale.data(), shift.data(), C); });
}

void batch_norm_backward(const float* g, const float* x, const float* weight, const float* mean,
                         const float* invstd, float* gx, float* gw, float* gb, index_t n, index_t c, index_t s,
                         bool training) {
  const NormRowKernels& K = norm_row_kernels();
  const index_t M = n * s;
  std::vector<double> sg(c, 0.0), sgx(c, 0.0);
  if (M > 0 && (training || gw || gb)) {
    channel_sums(
        n, c, s, sg.data(), sgx.data(),
        [&](index_t ch, index_t off, index_t len, double* a, double* b) {
          K.sums_grad(g + off, x + off, len, mean[ch], a, b);
        },
        [&](index_t off, double* a, double* b) { K.sums_grad_vec(g + off, x + off, mean, a, b, c); });
  }
  if (gw)
    for (index_t j = 0; j < c; ++j) gw[j] = static_cast<float>(sgx[j] * invstd[j]);
  if (gb)
    for (index_t j = 0; j < c; ++j) gb[j] = static_cast<float>(sg[j]);
  if (M == 0) return;
  // gx = w*invstd * (g - sg/M - (x - mean) * invstd^2 * sgx/M)  =  g*a + (x - mean)*b + cc
  std::vector<float> a(c), b(c), cc(c);
  for (index_t j = 0; j < c; ++j) {
    const double wi = static_cast<double>(weight ? weight[j] : 1.0f) * invstd[j];
    a[j] = static_cast<float>(wi);
    if (training) {
      b[j] = static_cast<float>(-wi * invstd[j] * invstd[j] * sgx[j] / static_cast<double>(M));
      cc[j] = static_cast<float>(-wi * sg[j] / static_cast<double>(M));
    } else {
      b[j] = 0.0f;
      cc[j] = 0.0f;
    }
  }
  channel_map(
      n, c, s,
      [&](index_t ch, index_t off, index_t len) { K.affine2(g + off, x + off, gx + off, len, a[ch], mean[ch], b[ch], cc[ch]); },
      [&](index_t off) { K.affine2_vec(g + off, x + off, gx + off, a.data(), mean, b.data(), cc.data(), c); });
}

void layer_norm_forward(const float* x, const float* weight, const float* bias, float* y, float* mean, float* rstd,
                        index_t m, index_t d, float eps) {
  const NormRowKernels& K = norm_row_kernels();
  parallel_for(m, std::max<index_t>(1, kGrainElems / std::max<index_t>(d, 1)), [&](index_t b, index_t e) {
    for (index_t r = b; r < e; ++r)
      K.ln_forward(x + r * d, weight, bias, y + r * d, d, eps, mean ? mean + r : nullptr, rstd ? rstd + r : nullptr);
  });
}

void layer_norm_backward(const float* g, const float* x, const float* weight, const float* mean, const float* rstd,
                         float* gx, float* gw, float* gb, index_t m, index_t d) {
  const NormRowKernels& K = norm_row_kernels();
  const bool params = gw || gb;
  const int nt = threads_for(m, std::max<index_t>(1, kGrainElems / std::max<index_t>(d, 1)));
  // Private (D) double accumulators per thread for grad_weight / grad_bias.
  std::vector<double> acc(params ? static_cast<size_t>(nt) * 2 * d : 0, 0.0);
  parallel_units(
      m, 1,
      [&](int t, index_t b, index_t e) {
        double* tw = params && gw ? acc.data() + static_cast<size_t>(t) * 2 * d : nullptr;
        double* tb = params && gb ? acc.data() + static_cast<size_t>(t) * 2 * d + d : nullptr;
        for (index_t r = b; r < e; ++r)
          K.ln_backward(g + r * d, x + r * d, weight, mean[r], rstd[r], gx + r * d, tw, tb, d);
      },
      nt);
  for (index_t j = 0; j < d; ++j) {
    double sw = 0.0, sb = 0.0;
    for (int t = 0; t < nt; ++t) {
      sw += acc.empty() ? 0.0 : acc[static_cast<size_t>(t) * 2 * d + j];
      sb += acc.empty() ? 0.0 : acc[static_cast<size_t>(t) * 2 * d + d + j];
    }
    if (gw) gw[j] = static_cast<float>(sw);
    if (gb) gb[j] = static_cast<float>(sb);
  }
}

}  // namespace fl
