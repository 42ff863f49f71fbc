// The cross-entropy loops, written once in portable C++ (`omp simd` + a polynomial exp the
// compiler can vectorise) and compiled per ISA (loss_rows_{generic,avx2,avx512}.cpp), as the
// norm rows. Internal linkage throughout: no std:: template is instantiated here, so the
// linker cannot hand an AVX-512 copy to a baseline caller.
//
// std::exp is a scalar libm call (~20 cycles): the vectorised polynomial below makes the
// softmax part of cross_entropy several times faster on 8-wide AVX2 (see bench/ops_norm.py).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "loss/loss.h"

// Without -fno-trapping-math GCC will not turn the selects of these loops (clamps, NaN
// checks) into blends, and leaves them scalar: 26 ms -> 1.4 ms for the log-sum-exp of
// 2048 x 1000 logits with AVX2. No value changes: it only allows computing both sides.
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")

namespace fl {
namespace {

inline index_t min_i(index_t a, index_t b) { return a < b ? a : b; }

// exp(x) for float, Cephes' expf: x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-6
// polynomial (relative error ~2e-7, 1-2 ulp), times 2^n built in the exponent bits. x below
// -87.3 gives 0 (exp(-inf) = 0 for masked logits), above 88.7 gives +inf, NaN stays NaN.
inline float exp_poly(float x) {
  // NaN fails both comparisons and is clamped to -87.3 here (restored below): a NaN cast to
  // int32 would make the exponent shift undefined (UBSan).
  const float xc = x >= -87.3f ? (x <= 88.7f ? x : 88.7f) : -87.3f;
  const float t = xc * 1.44269504088896341f + 12582912.0f;  // round to nearest via 1.5 * 2^23
  const float n = t - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t e = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &e, sizeof scale);
  float y = p * scale;
  if (x < -87.3f) y = 0.0f;
  if (x > 88.7f) y = __builtin_inff();
  if (x != x) y = x;
  return y;
}

constexpr index_t kBlock = 512;  // float partial sums, then double (as in the norm rows)

float row_lse(const float* z, index_t c, double* sum_z) {
  float m = -__builtin_inff();
#pragma omp simd reduction(max : m)
  for (index_t j = 0; j < c; ++j) m = z[j] > m ? z[j] : m;
  // All -inf: every class equally (im)possible, lse = -inf; a NaN makes the max NaN-free, so
  // check it through the sum below (exp(NaN) = NaN).
  const float shift = (m == -__builtin_inff() || m == __builtin_inff()) ? 0.0f : m;
  double se = 0.0, sz = 0.0;
  for (index_t j0 = 0; j0 < c; j0 += kBlock) {
    const index_t j1 = min_i(c, j0 + kBlock);
    float a = 0.0f, b = 0.0f;
#pragma omp simd reduction(+ : a, b)
    for (index_t j = j0; j < j1; ++j) {
      a += exp_poly(z[j] - shift);
      b += z[j];
    }
    se += a;
    sz += b;
  }
  *sum_z = sz;
  return shift + static_cast<float>(std::log(se));
}

void row_grad(const float* z, index_t c, float lse, float a, int64_t t, float smooth, float* gz) {
  const float off = smooth / static_cast<float>(c);
#pragma omp simd
  for (index_t j = 0; j < c; ++j) gz[j] = a * (exp_poly(z[j] - lse) - off);
  gz[t] -= a * (1.0f - smooth);
}

void plane_lse(const float* z, index_t c, index_t s, index_t len, float* lse, float* sum_z) {
  // lse holds the running max, then the sum of exp; sum_z the sum of logits.
  for (index_t j = 0; j < len; ++j) {
    lse[j] = -__builtin_inff();
    sum_z[j] = 0.0f;
  }
  for (index_t k = 0; k < c; ++k) {
    const float* zk = z + k * s;
#pragma omp simd
    for (index_t j = 0; j < len; ++j) {
      lse[j] = zk[j] > lse[j] ? zk[j] : lse[j];
      sum_z[j] += zk[j];
    }
  }
  float mx[64], se[64];
  for (index_t j0 = 0; j0 < len; j0 += 64) {
    const index_t w = min_i(64, len - j0);
    for (index_t j = 0; j < w; ++j) {
      const float m = lse[j0 + j];
      mx[j] = (m == -__builtin_inff() || m == __builtin_inff()) ? 0.0f : m;
      se[j] = 0.0f;
    }
    for (index_t k = 0; k < c; ++k) {
      const float* zk = z + k * s + j0;
#pragma omp simd
      for (index_t j = 0; j < w; ++j) se[j] += exp_poly(zk[j] - mx[j]);
    }
    for (index_t j = 0; j < w; ++j) lse[j0 + j] = mx[j] + static_cast<float>(std::log(static_cast<double>(se[j])));
  }
}

void plane_grad(const float* z, index_t c, index_t s, index_t len, const float* lse, const float* a,
                const int64_t* t, float smooth, float* gz) {
  const float off = smooth / static_cast<float>(c);
  for (index_t k = 0; k < c; ++k) {
    const float* zk = z + k * s;
    float* gk = gz + k * s;
#pragma omp simd
    for (index_t j = 0; j < len; ++j) gk[j] = a[j] * (exp_poly(zk[j] - lse[j]) - off);
  }
  for (index_t j = 0; j < len; ++j)
    if (a[j] != 0.0f) gz[t[j] * s + j] -= a[j] * (1.0f - smooth);
}

LossRowKernels make_loss_rows() { return {&row_lse, &row_grad, &plane_lse, &plane_grad}; }

}  // namespace
}  // namespace fl

#pragma GCC pop_options
