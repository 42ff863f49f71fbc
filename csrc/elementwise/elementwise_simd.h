// The elementwise kernels written once over a SIMD traits type S; each ISA translation unit
// (elementwise_avx2.cpp, elementwise_avx512.cpp) instantiates them into its ElementwiseIsa
// table. Tails use masked loads/stores, so every element goes through the same vector code
// (no scalar remainder that could round differently).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "elementwise/elementwise_isa.h"
#include "elementwise/simd_math.h"

namespace fl {
namespace simd {

// The activation of the GEMM epilogue, resolved at compile time.
template <class S, int ACT>
inline typename S::V act_v(typename S::V x) {
  if constexpr (ACT == static_cast<int>(Activation::relu)) return relu_v<S>(x);
  else if constexpr (ACT == static_cast<int>(Activation::gelu)) return gelu_v<S>(x);
  else if constexpr (ACT == static_cast<int>(Activation::gelu_tanh)) return gelu_tanh_v<S>(x);
  else if constexpr (ACT == static_cast<int>(Activation::tanh)) return tanh_v<S>(x);
  else if constexpr (ACT == static_cast<int>(Activation::sigmoid)) return sigmoid_v<S>(x);
  else return x;
}

template <class S, class F>
inline void map1(const float* x, float* y, index_t n, bool stream, F f) {
  constexpr int W = S::W;
  index_t i = 0;
  if (stream) {
    // Non-temporal stores need aligned addresses: peel up to W-1 elements first.
    const index_t mis = static_cast<index_t>((reinterpret_cast<std::uintptr_t>(y) / sizeof(float)) % W);
    const index_t head = mis && reinterpret_cast<std::uintptr_t>(y) % sizeof(float) == 0 ? std::min<index_t>(n, W - mis) : 0;
    if (head) S::storen(y, head, f(S::loadn(x, head)));
    i = head;
    if (reinterpret_cast<std::uintptr_t>(y + i) % (W * sizeof(float)) == 0) {
      for (; i + 2 * W <= n; i += 2 * W) {
        const auto a = f(S::loadu(x + i)), b = f(S::loadu(x + i + W));
        S::stream(y + i, a);
        S::stream(y + i + W, b);
      }
      S::fence();
    }
  }
  for (; i + 2 * W <= n; i += 2 * W) {
    const auto a = f(S::loadu(x + i)), b = f(S::loadu(x + i + W));
    S::storeu(y + i, a);
    S::storeu(y + i + W, b);
  }
  for (; i + W <= n; i += W) S::storeu(y + i, f(S::loadu(x + i)));
  if (i < n) S::storen(y + i, n - i, f(S::loadn(x + i, n - i)));
}

// dx = f(g, x) elementwise.
template <class S, class F>
inline void map2(const float* g, const float* x, float* dx, index_t n, F f) {
  constexpr int W = S::W;
  index_t i = 0;
  for (; i + W <= n; i += W) S::storeu(dx + i, f(S::loadu(g + i), S::loadu(x + i)));
  if (i < n) S::storen(dx + i, n - i, f(S::loadn(g + i, n - i), S::loadn(x + i, n - i)));
}

template <class S>
void unary(UnaryOp op, const float* x, float* y, index_t n, float slope, bool stream) {
  using V = typename S::V;
  switch (op) {
    case UnaryOp::relu: map1<S>(x, y, n, stream, [](V v) { return relu_v<S>(v); }); break;
    case UnaryOp::leaky_relu: {
      const V s = S::set1(slope);
      map1<S>(x, y, n, stream, [s](V v) { return S::select(S::ge(v, S::zero()), v, S::mul(v, s)); });
      break;
    }
    case UnaryOp::sigmoid: map1<S>(x, y, n, stream, [](V v) { return sigmoid_v<S>(v); }); break;
    case UnaryOp::tanh: map1<S>(x, y, n, stream, [](V v) { return tanh_v<S>(v); }); break;
    case UnaryOp::gelu: map1<S>(x, y, n, stream, [](V v) { return gelu_v<S>(v); }); break;
    case UnaryOp::gelu_tanh: map1<S>(x, y, n, stream, [](V v) { return gelu_tanh_v<S>(v); }); break;
  }
}

template <class S>
void unary_backward(UnaryOp op, const float* g, const float* x, const float* y, float* dx, index_t n, float slope) {
  using V = typename S::V;
  const V one = S::set1(1.0f);
  switch (op) {
    case UnaryOp::relu:
      map2<S>(g, x, dx, n, [one](V gv, V v) { return S::mul(gv, S::keep(S::gt(v, S::zero()), one)); });
      break;
    case UnaryOp::leaky_relu: {
      const V s = S::set1(slope);
      map2<S>(g, x, dx, n, [one, s](V gv, V v) { return S::mul(gv, S::select(S::ge(v, S::zero()), one, s)); });
      break;
    }
    case UnaryOp::sigmoid:
      if (y) {
        map2<S>(g, y, dx, n, [one](V gv, V s) { return S::mul(gv, S::mul(s, S::sub(one, s))); });
      } else {
        map2<S>(g, x, dx, n, [one](V gv, V v) {
          const V s = sigmoid_v<S>(v);
          return S::mul(gv, S::mul(s, S::sub(one, s)));
        });
      }
      break;
    case UnaryOp::tanh:
      if (y) {
        map2<S>(g, y, dx, n, [one](V gv, V t) { return S::mul(gv, S::fnma(t, t, one)); });
      } else {
        map2<S>(g, x, dx, n, [one](V gv, V v) {
          const V t = tanh_v<S>(v);
          return S::mul(gv, S::fnma(t, t, one));
        });
      }
      break;
    case UnaryOp::gelu: map2<S>(g, x, dx, n, [](V gv, V v) { return S::mul(gv, gelu_grad_v<S>(v)); }); break;
    case UnaryOp::gelu_tanh:
      map2<S>(g, x, dx, n, [](V gv, V v) { return S::mul(gv, gelu_tanh_grad_v<S>(v)); });
      break;
  }
}

// The shift that makes exp(x - shift) safe: the max when finite; +inf stays (x - inf gives
// NaN for the +inf entries, as IEEE says); an all -inf row shifts by 0 (0/0 -> NaN).
static inline float softmax_shift(float mx) { return std::isfinite(mx) ? mx : (mx > 0 ? mx : 0.0f); }

template <class S>
void softmax_rows(const float* x, float* y, index_t rows, index_t len, bool log) {
  using V = typename S::V;
  constexpr int W = S::W;
  const V ninf = S::set1(-std::numeric_limits<float>::infinity());
  for (index_t r = 0; r < rows; ++r, x += len, y += len) {
    V vmax0 = ninf, vmax1 = ninf;
    auto nan = S::isnan(S::zero());
    index_t i = 0;
    for (; i + 2 * W <= len; i += 2 * W) {
      const V a = S::loadu(x + i), b = S::loadu(x + i + W);
      nan = S::mor(nan, S::mor(S::isnan(a), S::isnan(b)));
      vmax0 = S::max(vmax0, a);
      vmax1 = S::max(vmax1, b);
    }
    for (; i + W <= len; i += W) {
      const V a = S::loadu(x + i);
      nan = S::mor(nan, S::isnan(a));
      vmax0 = S::max(vmax0, a);
    }
    if (i < len) {
      const V a = S::loadn(x + i, len - i, ninf);
      nan = S::mor(nan, S::isnan(a));
      vmax0 = S::max(vmax0, a);
    }
    if (S::any(nan)) {  // IEEE: a NaN anywhere in the row makes the whole row NaN
      for (index_t j = 0; j < len; ++j) y[j] = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    const float shift = softmax_shift(S::hmax(S::max(vmax0, vmax1)));
    const V vs = S::set1(shift);
    V sum0 = S::zero(), sum1 = S::zero();
    i = 0;
    for (; i + 2 * W <= len; i += 2 * W) {
      const V a = exp_v<S>(S::sub(S::loadu(x + i), vs)), b = exp_v<S>(S::sub(S::loadu(x + i + W), vs));
      if (!log) {
        S::storeu(y + i, a);
        S::storeu(y + i + W, b);
      }
      sum0 = S::add(sum0, a);
      sum1 = S::add(sum1, b);
    }
    for (; i < len; i += W) {
      const index_t cnt = std::min<index_t>(W, len - i);
      const V a = exp_v<S>(S::sub(S::loadn(x + i, cnt, ninf), vs));
      if (!log) S::storen(y + i, cnt, a);
      sum0 = S::add(sum0, a);
    }
    const float sum = S::hsum(S::add(sum0, sum1));
    if (log) {
      const V off = S::set1(shift + std::log(sum));
      // x - (shift + lse) rounds once more than (x - shift) - lse; both are within 1 ulp of
      // the float64 truth for the O(1)-O(1e4) logits the tests use.
      map1<S>(x, y, len, false, [off](V v) { return S::sub(v, off); });
    } else {
      const V inv = S::set1(1.0f / sum);
      map1<S>(y, y, len, false, [inv](V v) { return S::mul(v, inv); });
    }
  }
}

template <class S>
void softmax_cols(const float* x, float* y, index_t len, index_t inner, index_t c0, index_t c1, bool log) {
  using V = typename S::V;
  constexpr int W = S::W;
  const V ninf = S::set1(-std::numeric_limits<float>::infinity());
  const V qnan = S::set1(std::numeric_limits<float>::quiet_NaN());
  const V inf = S::set1(std::numeric_limits<float>::infinity());
  for (index_t c = c0; c < c1; c += W) {
    const index_t cnt = std::min<index_t>(W, c1 - c);
    auto ld = [&](const float* p) { return cnt == W ? S::loadu(p) : S::loadn(p, cnt, S::zero()); };
    auto st = [&](float* p, V v) { cnt == W ? S::storeu(p, v) : S::storen(p, cnt, v); };
    V vmax = ninf;
    auto nan = S::isnan(S::zero());
    for (index_t i = 0; i < len; ++i) {
      const V a = ld(x + i * inner + c);
      nan = S::mor(nan, S::isnan(a));
      vmax = S::max(vmax, a);
    }
    // Per lane: the same shift rule as softmax_shift.
    const auto finite = S::lt(S::abs(vmax), inf);
    const V shift = S::select(finite, vmax, S::select(S::gt(vmax, S::zero()), vmax, S::zero()));
    V sum = S::zero();
    for (index_t i = 0; i < len; ++i) {
      const V e = exp_v<S>(S::sub(ld(x + i * inner + c), shift));
      if (!log) st(y + i * inner + c, e);
      sum = S::add(sum, e);
    }
    if (log) {
      alignas(64) float s[W], o[W];
      S::store(s, sum);
      S::store(o, shift);
      for (int j = 0; j < W; ++j) o[j] += std::log(s[j]);
      const V off = S::load(o);
      for (index_t i = 0; i < len; ++i) {
        const V v = S::sub(ld(x + i * inner + c), off);
        st(y + i * inner + c, S::select(nan, qnan, v));
      }
    } else {
      const V inv = S::div(S::set1(1.0f), sum);
      for (index_t i = 0; i < len; ++i) {
        const V v = S::mul(ld(y + i * inner + c), inv);
        st(y + i * inner + c, S::select(nan, qnan, v));
      }
    }
  }
}

// softmax: dx = y (g - <g, y>); log_softmax: dx = g - exp(y) sum(g).
template <class S>
void softmax_backward_rows(const float* g, const float* y, float* dx, index_t rows, index_t len, bool log) {
  using V = typename S::V;
  constexpr int W = S::W;
  for (index_t r = 0; r < rows; ++r, g += len, y += len, dx += len) {
    V acc0 = S::zero(), acc1 = S::zero();
    index_t i = 0;
    if (log) {
      for (; i + 2 * W <= len; i += 2 * W) {
        acc0 = S::add(acc0, S::loadu(g + i));
        acc1 = S::add(acc1, S::loadu(g + i + W));
      }
      for (; i < len; i += W) acc0 = S::add(acc0, S::loadn(g + i, std::min<index_t>(W, len - i)));
      const V dot = S::set1(S::hsum(S::add(acc0, acc1)));
      map2<S>(g, y, dx, len, [dot](V gv, V yv) { return S::fnma(exp_v<S>(yv), dot, gv); });
    } else {
      for (; i + 2 * W <= len; i += 2 * W) {
        acc0 = S::fma(S::loadu(g + i), S::loadu(y + i), acc0);
        acc1 = S::fma(S::loadu(g + i + W), S::loadu(y + i + W), acc1);
      }
      for (; i < len; i += W) {
        const index_t cnt = std::min<index_t>(W, len - i);
        acc0 = S::fma(S::loadn(g + i, cnt), S::loadn(y + i, cnt), acc0);
      }
      const V dot = S::set1(S::hsum(S::add(acc0, acc1)));
      map2<S>(g, y, dx, len, [dot](V gv, V yv) { return S::mul(yv, S::sub(gv, dot)); });
    }
  }
}

template <class S>
void softmax_backward_cols(const float* g, const float* y, float* dx, index_t len, index_t inner, index_t c0,
                           index_t c1, bool log) {
  using V = typename S::V;
  constexpr int W = S::W;
  for (index_t c = c0; c < c1; c += W) {
    const index_t cnt = std::min<index_t>(W, c1 - c);
    auto ld = [&](const float* p) { return cnt == W ? S::loadu(p) : S::loadn(p, cnt); };
    auto st = [&](float* p, V v) { cnt == W ? S::storeu(p, v) : S::storen(p, cnt, v); };
    V dot = S::zero();
    for (index_t i = 0; i < len; ++i) {
      const index_t o = i * inner + c;
      dot = log ? S::add(dot, ld(g + o)) : S::fma(ld(g + o), ld(y + o), dot);
    }
    for (index_t i = 0; i < len; ++i) {
      const index_t o = i * inner + c;
      const V gv = ld(g + o), yv = ld(y + o);
      st(dx + o, log ? S::fnma(exp_v<S>(yv), dot, gv) : S::mul(yv, S::sub(gv, dot)));
    }
  }
}

// The GEMM epilogue on one vector: z + (row bias + column bias), then the activation. The
// micro-kernels call this on registers; epilogue() below on memory; both round identically.
template <class S, int ACT>
inline typename S::V epi_v(typename S::V z, typename S::V bias, bool has_bias) {
  return act_v<S, ACT>(has_bias ? S::add(z, bias) : z);
}

template <class S, int ACT>
void epilogue_t(float* c, index_t ldc, index_t m, index_t n, const float* row_bias, const float* col_bias) {
  using V = typename S::V;
  constexpr int W = S::W;
  const bool has_bias = row_bias || col_bias;
  for (index_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    const V rb = S::set1(row_bias ? row_bias[i] : 0.0f);
    index_t j = 0;
    for (; j < n; j += W) {
      const index_t cnt = std::min<index_t>(W, n - j);
      const V cb = col_bias ? (cnt == W ? S::loadu(col_bias + j) : S::loadn(col_bias + j, cnt)) : S::zero();
      const V z = cnt == W ? S::loadu(row + j) : S::loadn(row + j, cnt);
      const V r = epi_v<S, ACT>(z, S::add(rb, cb), has_bias);
      cnt == W ? S::storeu(row + j, r) : S::storen(row + j, cnt, r);
    }
  }
}

template <class S>
void epilogue(float* c, index_t ldc, index_t m, index_t n, const float* row_bias, const float* col_bias,
              Activation act) {
  switch (act) {
    case Activation::none:
      if (row_bias || col_bias) epilogue_t<S, 0>(c, ldc, m, n, row_bias, col_bias);
      break;
    case Activation::relu: epilogue_t<S, 1>(c, ldc, m, n, row_bias, col_bias); break;
    case Activation::gelu: epilogue_t<S, 2>(c, ldc, m, n, row_bias, col_bias); break;
    case Activation::gelu_tanh: epilogue_t<S, 3>(c, ldc, m, n, row_bias, col_bias); break;
    case Activation::tanh: epilogue_t<S, 4>(c, ldc, m, n, row_bias, col_bias); break;
    case Activation::sigmoid: epilogue_t<S, 5>(c, ldc, m, n, row_bias, col_bias); break;
  }
}

template <class S>
const ElementwiseIsa& table(const char* name) {
  static const ElementwiseIsa t{&unary<S>,         &unary_backward<S>,        &softmax_rows<S>,
                                &softmax_cols<S>,  &softmax_backward_rows<S>, &softmax_backward_cols<S>,
                                &epilogue<S>,      name};
  return t;
}

}  // namespace simd
}  // namespace fl
