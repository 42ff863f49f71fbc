// Vectorised activation math, written once over a SIMD traits type S (simd_avx2.h,
// simd_avx512.h) and included only by the ISA translation units. Shared by the elementwise
// kernels and the GEMM epilogue, so linear(..., activation=a) and a(linear(...)) agree bit
// for bit on a given ISA.
//
// Accuracy (float32, measured against float64 over 1e7 points in [-20, 20] and the edges):
// exp ~1 ulp (Cephes polynomial), tanh/sigmoid ~2 ulp, erfc relative error < 2e-7 (Numerical
// Recipes' Chebyshev fit, fractional error < 1.2e-7), so gelu is accurate to a few ulp
// including the far-negative tail. IEEE behaviour: NaN in -> NaN out; +-inf and huge finite
// inputs give the limits (exp overflows to inf and underflows to 0 like expf, never NaN).
#pragma once

#include "core/common.h"

namespace fl {
namespace simd {

// exp(x): n = round(x / ln2), r = x - n ln2 (Cody-Waite split), e^r by a degree-6
// polynomial, times 2^n in two halves so overflow/underflow round like expf does.
template <class S>
inline typename S::V exp_v(typename S::V x) {
  using V = typename S::V;
  // min/max with x second keep a NaN x; 88.8 > ln(FLT_MAX) -> inf, -104 -> 2^-150 -> 0.
  x = S::min(S::set1(88.8f), S::max(S::set1(-104.0f), x));
  const V n = S::round(S::mul(x, S::set1(1.44269504088896341f)));
  V r = S::fnma(n, S::set1(0.693359375f), x);
  r = S::fnma(n, S::set1(-2.12194440e-4f), r);
  V p = S::set1(1.9875691500e-4f);
  p = S::fma(p, r, S::set1(1.3981999507e-3f));
  p = S::fma(p, r, S::set1(8.3334519073e-3f));
  p = S::fma(p, r, S::set1(4.1665795894e-2f));
  p = S::fma(p, r, S::set1(1.6666665459e-1f));
  p = S::fma(p, r, S::set1(5.0000001201e-1f));
  const V y = S::fma(S::mul(p, r), r, S::add(r, S::set1(1.0f)));
  return S::pow2_mul(y, n);
}

template <class S>
inline typename S::V relu_v(typename S::V x) {
  return S::keep(S::gt_or_nan(x, S::zero()), x);  // x > 0 or NaN: x; else +0
}

template <class S>
inline typename S::V sigmoid_v(typename S::V x) {
  const auto one = S::set1(1.0f);
  return S::div(one, S::add(one, exp_v<S>(S::sub(S::zero(), x))));  // e^-x = inf -> 0
}

// tanh: odd polynomial below 0.625 (Cephes tanhf), else 1 - 2 / (e^{2|x|} + 1) with x's sign.
template <class S>
inline typename S::V tanh_v(typename S::V x) {
  using V = typename S::V;
  const V ax = S::abs(x);
  const V s = S::mul(x, x);
  V p = S::set1(-5.70498872745e-3f);
  p = S::fma(p, s, S::set1(2.06390887954e-2f));
  p = S::fma(p, s, S::set1(-5.37397155531e-2f));
  p = S::fma(p, s, S::set1(1.33314422036e-1f));
  p = S::fma(p, s, S::set1(-3.33332819422e-1f));
  const V small = S::fma(S::mul(p, s), x, x);
  const V e = exp_v<S>(S::add(ax, ax));
  const V big = S::fnma(S::set1(2.0f), S::div(S::set1(1.0f), S::add(e, S::set1(1.0f))), S::set1(1.0f));
  // Both branches computed as |tanh|, then x's sign (tanh(-0) = -0, tanh(NaN) = NaN).
  return S::bor(S::select(S::lt(ax, S::set1(0.625f)), S::abs(small), big), S::sign_of(x));
}

// erfc(z) for z >= 0 (z <= 10.5, where it is 0 in float): t exp(-z^2 + P(t)), t = 1/(1+z/2).
// z^2 is split into hi + lo (FMA) so the exponent's rounding does not cost accuracy for z ~ 10.
template <class S>
inline typename S::V erfc_pos_v(typename S::V z) {
  using V = typename S::V;
  const V t = S::div(S::set1(1.0f), S::fma(S::set1(0.5f), z, S::set1(1.0f)));
  V p = S::set1(0.17087277f);
  p = S::fma(p, t, S::set1(-0.82215223f));
  p = S::fma(p, t, S::set1(1.48851587f));
  p = S::fma(p, t, S::set1(-1.13520398f));
  p = S::fma(p, t, S::set1(0.27886807f));
  p = S::fma(p, t, S::set1(-0.18628806f));
  p = S::fma(p, t, S::set1(0.09678418f));
  p = S::fma(p, t, S::set1(0.37409196f));
  p = S::fma(p, t, S::set1(1.00002368f));
  p = S::fma(p, t, S::set1(-1.26551223f));
  const V hi = S::mul(z, z), lo = S::fms(z, z, hi);
  const V e = exp_v<S>(S::sub(p, hi));
  return S::mul(t, S::fnma(e, lo, e));  // e^-(hi+lo) ~ e^-hi (1 - lo)
}

// Phi(x) = erfc(-x/sqrt2)/2, the normal CDF, accurate in both tails.
template <class S>
inline typename S::V phi_v(typename S::V x) {
  using V = typename S::V;
  const V az = S::min(S::set1(10.5f), S::abs(S::mul(x, S::set1(0.70710678118654752f))));  // NaN kept
  const V half_e = S::mul(S::set1(0.5f), erfc_pos_v<S>(az));
  return S::select(S::lt(x, S::zero()), half_e, S::sub(S::set1(1.0f), half_e));
}

template <class S>
inline typename S::V gelu_v(typename S::V x) {
  return S::mul(x, phi_v<S>(x));
}

// gelu_tanh = x (1 + tanh u) / 2 = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): the
// sigmoid form has no cancellation in the negative tail.
template <class S>
inline typename S::V gelu_tanh_v(typename S::V x) {
  using V = typename S::V;
  const V u = S::mul(S::mul(S::set1(0.79788456080286536f), x), S::fma(S::set1(0.044715f), S::mul(x, x), S::set1(1.0f)));
  const V e = exp_v<S>(S::mul(S::set1(-2.0f), u));
  return S::div(x, S::add(S::set1(1.0f), e));
}

// d/dx gelu = Phi(x) + x phi(x); the density's exponent -x^2/2 is split like erfc's.
template <class S>
inline typename S::V gelu_grad_v(typename S::V x) {
  using V = typename S::V;
  const V ax = S::min(S::set1(20.0f), S::abs(x));  // e^-200 = 0 already; keeps x^2 finite
  const V hi = S::mul(ax, ax), lo = S::fms(ax, ax, hi);
  const V e = exp_v<S>(S::mul(S::set1(-0.5f), hi));
  const V dens = S::fnma(S::mul(S::set1(0.5f), lo), e, e);
  return S::fma(S::mul(x, S::set1(0.39894228040143268f)), dens, phi_v<S>(x));
}

// d/dx gelu_tanh with s = sigmoid(2u): (1 + t)/2 = s and 1 - t^2 = 4 s (1 - s), so
// grad = s + 2 x s (1 - s) u'. u' uses x clamped to +-30 (s (1 - s) is 0 there anyway) so
// that huge x gives 0 * finite, not 0 * inf.
template <class S>
inline typename S::V gelu_tanh_grad_v(typename S::V x) {
  using V = typename S::V;
  const V c = S::set1(0.79788456080286536f);
  const V x2 = S::mul(x, x);
  const V u = S::mul(S::mul(c, x), S::fma(S::set1(0.044715f), x2, S::set1(1.0f)));
  const V s = S::div(S::set1(1.0f), S::add(S::set1(1.0f), exp_v<S>(S::mul(S::set1(-2.0f), u))));
  const V xc = S::min(S::set1(30.0f), S::max(S::set1(-30.0f), x));
  const V du = S::mul(c, S::fma(S::set1(3.0f * 0.044715f), S::mul(xc, xc), S::set1(1.0f)));
  const V ss = S::mul(s, S::sub(S::set1(1.0f), s));
  return S::fma(S::mul(S::add(x, x), ss), du, s);
}

}  // namespace simd
}  // namespace fl
