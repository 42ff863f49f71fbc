// The norm row loops, written once in portable C++ with `omp simd` reductions and compiled
// once per ISA (norm_rows_generic.cpp, norm_rows_avx2.cpp, norm_rows_avx512.cpp), each with
// its own -m flags: the variants are the same source, so they are right by construction.
// Everything here has internal linkage (anonymous namespace) so that no wide instruction can
// be picked by the linker for a baseline caller.
//
// Float partial sums run over blocks of kBlock values and are then added in double: a
// block of 512 float additions carries ~sqrt(512) * 6e-8 ~ 1.4e-6 relative error, and the
// double total keeps it there for any length (a plain float sum over 224*224 values would not).
#pragma once

#include <cmath>

#include "norm/norm.h"

// Without -fno-trapping-math GCC will not turn the selects of these loops (clamps, NaN
// checks) into blends, and leaves them scalar: 26 ms -> 1.4 ms for the log-sum-exp of
// 2048 x 1000 logits with AVX2. No value changes: it only allows computing both sides.
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")

namespace fl {
namespace {

constexpr index_t kBlock = 512;

// Not std::min: a std:: template instantiated here would be an inline function with external
// linkage, and the linker may hand the AVX-512 copy to a baseline caller.
inline index_t min_i(index_t a, index_t b) { return a < b ? a : b; }

void sums_shift(const float* x, index_t len, float k, double* s1, double* s2) {
  double t1 = 0.0, t2 = 0.0;
  for (index_t i0 = 0; i0 < len; i0 += kBlock) {
    const index_t i1 = min_i(len, i0 + kBlock);
    float a = 0.0f, b = 0.0f;
#pragma omp simd reduction(+ : a, b)
    for (index_t i = i0; i < i1; ++i) {
      const float d = x[i] - k;
      a += d;
      b += d * d;
    }
    t1 += a;
    t2 += b;
  }
  *s1 += t1;
  *s2 += t2;
}

void sums_grad(const float* g, const float* x, index_t len, float m, double* sg, double* sgx) {
  double t1 = 0.0, t2 = 0.0;
  for (index_t i0 = 0; i0 < len; i0 += kBlock) {
    const index_t i1 = min_i(len, i0 + kBlock);
    float a = 0.0f, b = 0.0f;
#pragma omp simd reduction(+ : a, b)
    for (index_t i = i0; i < i1; ++i) {
      a += g[i];
      b += g[i] * (x[i] - m);
    }
    t1 += a;
    t2 += b;
  }
  *sg += t1;
  *sgx += t2;
}

void affine(const float* x, float* y, index_t len, float a, float b) {
#pragma omp simd
  for (index_t i = 0; i < len; ++i) y[i] = x[i] * a + b;
}

void affine2(const float* g, const float* x, float* gx, index_t len, float a, float m, float b, float c) {
#pragma omp simd
  for (index_t i = 0; i < len; ++i) gx[i] = g[i] * a + (x[i] - m) * b + c;
}

void sums_shift_vec(const float* x, const float* k, double* s1, double* s2, index_t c) {
#pragma omp simd
  for (index_t j = 0; j < c; ++j) {
    const double d = static_cast<double>(x[j] - k[j]);
    s1[j] += d;
    s2[j] += d * d;
  }
}

void sums_grad_vec(const float* g, const float* x, const float* m, double* sg, double* sgx, index_t c) {
#pragma omp simd
  for (index_t j = 0; j < c; ++j) {
    sg[j] += static_cast<double>(g[j]);
    sgx[j] += static_cast<double>(g[j]) * static_cast<double>(x[j] - m[j]);
  }
}

void affine_vec(const float* x, float* y, const float* a, const float* b, index_t c) {
#pragma omp simd
  for (index_t j = 0; j < c; ++j) y[j] = x[j] * a[j] + b[j];
}

void affine2_vec(const float* g, const float* x, float* gx, const float* a, const float* m, const float* b,
                 const float* cc, index_t c) {
#pragma omp simd
  for (index_t j = 0; j < c; ++j) gx[j] = g[j] * a[j] + (x[j] - m[j]) * b[j] + cc[j];
}

// Two passes over the row (it is in L1/L2 for the D of real models): the mean, then the
// centred sum of squares, which has no cancellation whatever the offset of the data.
void ln_forward(const float* x, const float* w, const float* b, float* y, index_t d, float eps, float* mean_out,
                float* rstd_out) {
  double s = 0.0;
  for (index_t i0 = 0; i0 < d; i0 += kBlock) {
    const index_t i1 = min_i(d, i0 + kBlock);
    float a = 0.0f;
#pragma omp simd reduction(+ : a)
    for (index_t i = i0; i < i1; ++i) a += x[i];
    s += a;
  }
  const float mean = static_cast<float>(s / static_cast<double>(d));
  double v = 0.0;
  for (index_t i0 = 0; i0 < d; i0 += kBlock) {
    const index_t i1 = min_i(d, i0 + kBlock);
    float a = 0.0f;
#pragma omp simd reduction(+ : a)
    for (index_t i = i0; i < i1; ++i) {
      const float t = x[i] - mean;
      a += t * t;
    }
    v += a;
  }
  const float rstd = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(d) + static_cast<double>(eps)));
  if (w && b) {
#pragma omp simd
    for (index_t i = 0; i < d; ++i) y[i] = (x[i] - mean) * rstd * w[i] + b[i];
  } else if (w) {
#pragma omp simd
    for (index_t i = 0; i < d; ++i) y[i] = (x[i] - mean) * rstd * w[i];
  } else if (b) {
#pragma omp simd
    for (index_t i = 0; i < d; ++i) y[i] = (x[i] - mean) * rstd + b[i];
  } else {
#pragma omp simd
    for (index_t i = 0; i < d; ++i) y[i] = (x[i] - mean) * rstd;
  }
  if (mean_out) *mean_out = mean;
  if (rstd_out) *rstd_out = rstd;
}

// gx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)) with gh = g * w, xhat = (x - mean) * rstd.
void ln_backward(const float* g, const float* x, const float* w, float mean, float rstd, float* gx, double* gw,
                 double* gb, index_t d) {
  double s1 = 0.0, s2 = 0.0;
  for (index_t i0 = 0; i0 < d; i0 += kBlock) {
    const index_t i1 = min_i(d, i0 + kBlock);
    float a = 0.0f, b = 0.0f;
    if (w) {
#pragma omp simd reduction(+ : a, b)
      for (index_t i = i0; i < i1; ++i) {
        const float gh = g[i] * w[i];
        a += gh;
        b += gh * ((x[i] - mean) * rstd);
      }
    } else {
#pragma omp simd reduction(+ : a, b)
      for (index_t i = i0; i < i1; ++i) {
        a += g[i];
        b += g[i] * ((x[i] - mean) * rstd);
      }
    }
    s1 += a;
    s2 += b;
  }
  const float mg = static_cast<float>(s1 / static_cast<double>(d));
  const float mgx = static_cast<float>(s2 / static_cast<double>(d));
  if (w) {
#pragma omp simd
    for (index_t i = 0; i < d; ++i) gx[i] = rstd * (g[i] * w[i] - mg - ((x[i] - mean) * rstd) * mgx);
  } else {
#pragma omp simd
    for (index_t i = 0; i < d; ++i) gx[i] = rstd * (g[i] - mg - ((x[i] - mean) * rstd) * mgx);
  }
  if (gw) {
#pragma omp simd
    for (index_t i = 0; i < d; ++i) gw[i] += static_cast<double>(g[i] * ((x[i] - mean) * rstd));
  }
  if (gb) {
#pragma omp simd
    for (index_t i = 0; i < d; ++i) gb[i] += static_cast<double>(g[i]);
  }
}

NormRowKernels make_norm_rows() {
  return {&sums_shift, &sums_grad,      &affine,      &affine2,    &sums_shift_vec,
          &sums_grad_vec, &affine_vec, &affine2_vec, &ln_forward, &ln_backward};
}

}  // namespace
}  // namespace fl

#pragma GCC pop_options
