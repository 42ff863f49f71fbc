// Portable recurrent step kernels (any CPU, baseline flags): a 4-lane "vector" of plain
// floats that the compiler may map onto SSE2. Also the dispatcher.
#include <cmath>

#include "rnn/rnn_kernels_impl.h"

namespace fl {
namespace {

struct Generic {
  static constexpr int W = 4;
  static constexpr int kRows = 2;
  static constexpr int kVecs = 4;
  struct V {
    float v[W];
  };
  template <class F>
  static V map(F f) {
    V r;
    for (int i = 0; i < W; ++i) r.v[i] = f(i);
    return r;
  }
  static V zero() { return set1(0.0f); }
  static V set1(float x) { return map([&](int) { return x; }); }
  static V load(const float* p) { return map([&](int i) { return p[i]; }); }
  static V loadu(const float* p) { return load(p); }
  static void store(float* p, V v) {
    for (int i = 0; i < W; ++i) p[i] = v.v[i];
  }
  static void storeu(float* p, V v) { store(p, v); }
  static V loadn(const float* p, int n) { return map([&](int i) { return i < n ? p[i] : 0.0f; }); }
  static void storen(float* p, V v, int n) {
    for (int i = 0; i < n; ++i) p[i] = v.v[i];
  }
  static V add(V a, V b) { return map([&](int i) { return a.v[i] + b.v[i]; }); }
  static V sub(V a, V b) { return map([&](int i) { return a.v[i] - b.v[i]; }); }
  static V mul(V a, V b) { return map([&](int i) { return a.v[i] * b.v[i]; }); }
  static V div(V a, V b) { return map([&](int i) { return a.v[i] / b.v[i]; }); }
  // Same operand order semantics as minps/maxps: the second operand when either is NaN.
  static V min(V a, V b) { return map([&](int i) { return a.v[i] < b.v[i] ? a.v[i] : b.v[i]; }); }
  static V max(V a, V b) { return map([&](int i) { return a.v[i] > b.v[i] ? a.v[i] : b.v[i]; }); }
  static V fma(V a, V b, V c) { return map([&](int i) { return a.v[i] * b.v[i] + c.v[i]; }); }
  static V fnma(V a, V b, V c) { return map([&](int i) { return c.v[i] - a.v[i] * b.v[i]; }); }
  static V tanh(V x) { return rnn_detail::rational_tanh<Generic>(x); }
  static V relu(V x) { return max(zero(), x); }
  static V relu_mask(V g, V h) { return map([&](int i) { return h.v[i] > 0.0f ? g.v[i] : 0.0f; }); }
};

}  // namespace

RnnKernels rnn_kernels_generic() { return rnn_detail::make_kernels<Generic>(); }

RnnKernels rnn_kernels_for(Isa isa) {
#if defined(FASTLAYERS_X86)
  if (isa == Isa::avx512) return rnn_kernels_avx512();
  if (isa == Isa::avx2) return rnn_kernels_avx2();
#endif
  return rnn_kernels_generic();
}

}  // namespace fl
