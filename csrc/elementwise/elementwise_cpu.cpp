// Elementwise activations and softmax (CPU): threading and ISA dispatch here, the kernels
// per ISA in ElementwiseIsa tables (elementwise_isa.h). This file also holds the portable
// scalar table (baseline flags, any CPU), the fallback when no SIMD table applies.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/parallel.h"
#include "elementwise/activation_math.h"
#include "elementwise/elementwise.h"
#include "elementwise/elementwise_isa.h"

namespace fl {
namespace {

// Elements per thread before splitting pays: ~16K elements = 128 KiB moved, ~10 us.
constexpr index_t kGrain = 1 << 14;
// Outputs above this many bytes are written with non-temporal stores: far beyond L3
// (32 MiB on the Zen 3 box here), so caching them only evicts the inputs and costs a
// read-for-ownership per line (~1.5x the traffic of a plain write).
constexpr index_t kStreamBytes = index_t{48} << 20;

// ---- portable scalar kernels ---------------------------------------------------------

template <typename F>
void map1(const float* x, float* y, index_t n, F f) {
  for (index_t i = 0; i < n; ++i) y[i] = f(x[i]);
}

template <typename F>
void map2(const float* g, const float* x, float* dx, index_t n, F f) {
  for (index_t i = 0; i < n; ++i) dx[i] = g[i] * f(x[i]);
}

void unary_generic(UnaryOp op, const float* x, float* y, index_t n, float slope, bool) {
  switch (op) {
    case UnaryOp::relu: map1(x, y, n, relu_f); break;
    case UnaryOp::leaky_relu: map1(x, y, n, [slope](float v) { return v >= 0.0f ? v : v * slope; }); break;
    case UnaryOp::sigmoid: map1(x, y, n, sigmoid_f); break;
    case UnaryOp::tanh: map1(x, y, n, tanh_f); break;
    case UnaryOp::gelu: map1(x, y, n, gelu_f); break;
    case UnaryOp::gelu_tanh: map1(x, y, n, gelu_tanh_f); break;
  }
}

void unary_backward_generic(UnaryOp op, const float* g, const float* x, const float* y, float* dx, index_t n,
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
    if (!log) y[i * inner] = e;
    sum += e;
  }
  if (log) {
    const float off = shift + static_cast<float>(std::log(sum));
    for (index_t i = 0; i < len; ++i) y[i * inner] = x[i * inner] - off;
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

void softmax_rows_generic(const float* x, float* y, index_t rows, index_t len, bool log) {
  for (index_t r = 0; r < rows; ++r) softmax_row(x + r * len, y + r * len, len, 1, log);
}
void softmax_cols_generic(const float* x, float* y, index_t len, index_t inner, index_t c0, index_t c1, bool log) {
  for (index_t c = c0; c < c1; ++c) softmax_row(x + c, y + c, len, inner, log);
}
void softmax_backward_rows_generic(const float* g, const float* y, float* dx, index_t rows, index_t len, bool log) {
  for (index_t r = 0; r < rows; ++r) softmax_backward_row(g + r * len, y + r * len, dx + r * len, len, 1, log);
}
void softmax_backward_cols_generic(const float* g, const float* y, float* dx, index_t len, index_t inner,
                                   index_t c0, index_t c1, bool log) {
  for (index_t c = c0; c < c1; ++c) softmax_backward_row(g + c, y + c, dx + c, len, inner, log);
}

template <typename F>
void map_block(float* c, index_t ldc, index_t m, index_t n, F f) {
  for (index_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    for (index_t j = 0; j < n; ++j) row[j] = f(row[j]);
  }
}

void epilogue_generic(float* c, index_t ldc, index_t m, index_t n, const float* row_bias, const float* col_bias,
                      Activation act) {
  if (row_bias || col_bias) {
    for (index_t i = 0; i < m; ++i) {
      float* row = c + i * ldc;
      const float rb = row_bias ? row_bias[i] : 0.0f;
      if (col_bias) {
        for (index_t j = 0; j < n; ++j) row[j] += rb + col_bias[j];
      } else {
        for (index_t j = 0; j < n; ++j) row[j] += rb;
      }
    }
  }
  switch (act) {
    case Activation::none: break;
    case Activation::relu: map_block(c, ldc, m, n, relu_f); break;
    case Activation::gelu: map_block(c, ldc, m, n, gelu_f); break;
    case Activation::gelu_tanh: map_block(c, ldc, m, n, gelu_tanh_f); break;
    case Activation::tanh: map_block(c, ldc, m, n, tanh_f); break;
    case Activation::sigmoid: map_block(c, ldc, m, n, sigmoid_f); break;
  }
}

// Rows (or column groups) per thread chunk so that each chunk moves ~kGrain elements.
index_t grain_in(index_t unit) { return std::max<index_t>(1, kGrain / std::max<index_t>(unit, 1)); }

}  // namespace

const ElementwiseIsa& elementwise_generic() {
  static const ElementwiseIsa t{&unary_generic,         &unary_backward_generic,        &softmax_rows_generic,
                                &softmax_cols_generic,  &softmax_backward_rows_generic, &softmax_backward_cols_generic,
                                &epilogue_generic,      "generic"};
  return t;
}

const ElementwiseIsa& elementwise_for(Isa isa) {
#if defined(FASTLAYERS_X86)
  if (isa == Isa::avx512) return elementwise_avx512();
  if (isa == Isa::avx2) return elementwise_avx2();
#endif
  return elementwise_generic();
}

void unary_forward(UnaryOp op, const float* x, float* y, index_t n, float slope) {
  const ElementwiseIsa& k = elementwise_for(active_isa());
  const bool stream = n * static_cast<index_t>(sizeof(float)) >= kStreamBytes && x != y;
  // Chunks are multiples of 64 floats so that every thread's stores start 64-byte aligned
  // relative to y (non-temporal stores need it) and no two threads share a cache line.
  const index_t blocks = (n + 63) / 64;
  parallel_for(blocks, kGrain / 64, [&](index_t b, index_t e) {
    const index_t lo = b * 64, hi = std::min(n, e * 64);
    k.unary(op, x + lo, y + lo, hi - lo, slope, stream);
  });
}

void unary_backward(UnaryOp op, const float* g, const float* x, const float* y, float* dx, index_t n,
                    float slope) {
  const ElementwiseIsa& k = elementwise_for(active_isa());
  const index_t blocks = (n + 63) / 64;
  parallel_for(blocks, kGrain / 64, [&](index_t b, index_t e) {
    const index_t lo = b * 64, hi = std::min(n, e * 64);
    k.unary_backward(op, g + lo, x + lo, y ? y + lo : nullptr, dx + lo, hi - lo, slope);
  });
}

// inner == 1: rows are contiguous, vectorised along the row. inner > 1: the softmax axis
// has stride inner, vectorised across groups of 64 adjacent columns (the contiguous axis).
constexpr index_t kColGroup = 64;

void softmax_forward(const float* x, float* y, index_t outer, index_t len, index_t inner, bool log) {
  if (outer * len * inner == 0) return;
  const ElementwiseIsa& k = elementwise_for(active_isa());
  if (inner == 1) {
    parallel_for(outer, grain_in(len), [&](index_t b, index_t e) {
      k.softmax_rows(x + b * len, y + b * len, e - b, len, log);
    });
    return;
  }
  const index_t groups = (inner + kColGroup - 1) / kColGroup;
  parallel_for(outer * groups, grain_in(len * kColGroup), [&](index_t b, index_t e) {
    for (index_t r = b; r < e; ++r) {
      const index_t o = r / groups, c0 = (r % groups) * kColGroup, c1 = std::min(inner, c0 + kColGroup);
      const index_t base = o * len * inner;
      k.softmax_cols(x + base, y + base, len, inner, c0, c1, log);
    }
  });
}

void softmax_backward(const float* g, const float* y, float* dx, index_t outer, index_t len, index_t inner,
                      bool log) {
  if (outer * len * inner == 0) return;
  const ElementwiseIsa& k = elementwise_for(active_isa());
  if (inner == 1) {
    parallel_for(outer, grain_in(len), [&](index_t b, index_t e) {
      k.softmax_backward_rows(g + b * len, y + b * len, dx + b * len, e - b, len, log);
    });
    return;
  }
  const index_t groups = (inner + kColGroup - 1) / kColGroup;
  parallel_for(outer * groups, grain_in(len * kColGroup), [&](index_t b, index_t e) {
    for (index_t r = b; r < e; ++r) {
      const index_t o = r / groups, c0 = (r % groups) * kColGroup, c1 = std::min(inner, c0 + kColGroup);
      const index_t base = o * len * inner;
      k.softmax_backward_cols(g + base, y + base, dx + base, len, inner, c0, c1, log);
    }
  });
}

}  // namespace fl
