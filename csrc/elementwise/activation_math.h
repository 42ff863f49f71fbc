// Scalar definitions of the activations and their derivatives, shared by the elementwise
// kernels and the GEMM epilogue so that linear(..., activation=a) and a(linear(...)) agree
// bit for bit. Written to propagate NaN and to stay finite for huge |x|.
#pragma once

#include <cmath>

namespace fl {

inline float relu_f(float x) { return x > 0.0f ? x : (x == x ? 0.0f : x); }

// 1 / (1 + e^-x) without overflow: for x < 0 use e^x / (1 + e^x).
inline float sigmoid_f(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
  const float e = std::exp(x);
  return e / (1.0f + e);
}

inline float tanh_f(float x) { return std::tanh(x); }

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kSqrt2OverPi = 0.79788456080286536f;
constexpr float kGeluCubic = 0.044715f;

// Exact GELU: x * Phi(x) = 0.5 x erfc(-x / sqrt 2); erfc keeps the far-negative tail accurate.
inline float gelu_f(float x) { return 0.5f * x * std::erfc(-x * kInvSqrt2); }

inline float gelu_tanh_f(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  return 0.5f * x * (1.0f + std::tanh(u));
}

// d/dx of each, as functions of the input x.
inline float gelu_grad_f(float x) {
  constexpr float kInvSqrt2Pi = 0.39894228040143268f;
  const float cdf = 0.5f * std::erfc(-x * kInvSqrt2);
  return cdf + x * kInvSqrt2Pi * std::exp(-0.5f * x * x);
}

inline float gelu_tanh_grad_f(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  const float t = std::tanh(u);
  const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

}  // namespace fl
