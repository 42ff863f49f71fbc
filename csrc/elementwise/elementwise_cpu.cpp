#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/parallel.h"
#include "elementwise/activation_math.h"
#include "elementwise/elementwise.h"

namespace fl {
namespace {

constexpr index_t kGrain = 1 << 14;  // elements per thread before splitting pays

template <typename F>
void map1(const float* x, float* y, index_t n, F f) {
  parallel_for(n, kGrain, [&](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) y[i] = f(x[i]);
  });
}

template <typename F>
void map2(const float* g, const float* x, float* dx, index_t n, F f) {
  parallel_for(n, kGrain, [&](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) dx[i] = g[i] * f(x[i]);
  });
}

// One softmax row of `len` values at stride `inner`.
void softmax_row(const float* x, float* y, index_t len, index_t inner, bool log) {
  float mx = -std::numeric_limits<float>::infinity();
  bool nan = false;
  for (index_t i = 0; i < len; ++i) {
    const float v = x[i * inner];
    nan |= v != v;
    mx = std::max(mx, v);
  }
  if (nan) {  // IEEE: a NaN anywhere in the row makes the whole row NaN
    for (index_t i = 0; i < len; ++i) y[i * inner] = std::numeric_limits<float>::quiet_NaN();
    return;
  }
  // All -inf (or +inf present): fall back to treating the max as 0 shift so +inf -> NaN as IEEE.
  const float shift = std::isfinite(mx) ? mx : (mx > 0 ? mx : 0.0f);
  double sum = 0.0;
  for (index_t i = 0; i < len; ++i) {
    const float e = std::exp(x[i * inner] - shift);
    y[i * inner] = e;
    sum += e;
  }
  if (log) {
    const float lse = static_cast<float>(std::log(sum));
    for (index_t i = 0; i < len; ++i) y[i * inner] = x[i * inner] - shift - lse;
  } else {
    const float inv = static_cast<float>(1.0 / sum);
    for (index_t i = 0; i < len; ++i) y[i * inner] *= inv;
  }
}

void softmax_backward_row(const float* g, const float* y, float* dx, index_t len, index_t inner, bool log) {
  double dot = 0.0;
  if (log) {
    for (index_t i = 0; i < len; ++i) dot += g[i * inner];
    for (index_t i = 0; i < len; ++i)
      dx[i * inner] = g[i * inner] - std::exp(y[i * inner]) * static_cast<float>(dot);
  } else {
    for (index_t i = 0; i < len; ++i) dot += static_cast<double>(g[i * inner]) * y[i * inner];
    for (index_t i = 0; i < len; ++i) dx[i * inner] = y[i * inner] * (g[i * inner] - static_cast<float>(dot));
  }
}

}  // namespace

void unary_forward(UnaryOp op, const float* x, float* y, index_t n, float slope) {
  switch (op) {
    case UnaryOp::relu: map1(x, y, n, relu_f); break;
    case UnaryOp::leaky_relu: map1(x, y, n, [slope](float v) { return v >= 0.0f ? v : v * slope; }); break;
    case UnaryOp::sigmoid: map1(x, y, n, sigmoid_f); break;
    case UnaryOp::tanh: map1(x, y, n, tanh_f); break;
    case UnaryOp::gelu: map1(x, y, n, gelu_f); break;
    case UnaryOp::gelu_tanh: map1(x, y, n, gelu_tanh_f); break;
  }
}

void unary_backward(UnaryOp op, const float* g, const float* x, const float* y, float* dx, index_t n,
                    float slope) {
  switch (op) {
    case UnaryOp::relu: map2(g, x, dx, n, [](float v) { return v > 0.0f ? 1.0f : 0.0f; }); break;
    case UnaryOp::leaky_relu: map2(g, x, dx, n, [slope](float v) { return v >= 0.0f ? 1.0f : slope; }); break;
    case UnaryOp::sigmoid:
      if (y) {
        map2(g, y, dx, n, [](float s) { return s * (1.0f - s); });
      } else {
        map2(g, x, dx, n, [](float v) { const float s = sigmoid_f(v); return s * (1.0f - s); });
      }
      break;
    case UnaryOp::tanh:
      if (y) {
        map2(g, y, dx, n, [](float t) { return 1.0f - t * t; });
      } else {
        map2(g, x, dx, n, [](float v) { const float t = std::tanh(v); return 1.0f - t * t; });
      }
      break;
    case UnaryOp::gelu: map2(g, x, dx, n, gelu_grad_f); break;
    case UnaryOp::gelu_tanh: map2(g, x, dx, n, gelu_tanh_grad_f); break;
  }
}

void softmax_forward(const float* x, float* y, index_t outer, index_t len, index_t inner, bool log) {
  parallel_for(outer * inner, std::max<index_t>(1, kGrain / std::max<index_t>(len, 1)), [&](index_t b, index_t e) {
    for (index_t r = b; r < e; ++r) {
      const index_t o = r / inner, i = r % inner;
      const index_t base = o * len * inner + i;
      softmax_row(x + base, y + base, len, inner, log);
    }
  });
}

void softmax_backward(const float* g, const float* y, float* dx, index_t outer, index_t len, index_t inner,
                      bool log) {
  parallel_for(outer * inner, std::max<index_t>(1, kGrain / std::max<index_t>(len, 1)), [&](index_t b, index_t e) {
    for (index_t r = b; r < e; ++r) {
      const index_t o = r / inner, i = r % inner;
      const index_t base = o * len * inner + i;
      softmax_backward_row(g + base, y + base, dx + base, len, inner, log);
    }
  });
}

}  // namespace fl
