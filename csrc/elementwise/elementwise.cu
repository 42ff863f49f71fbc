// Elementwise activations on the GPU: grid-stride loops, float4 loads when aligned.
// Memory-bound: the figure of merit is GB/s against the device's copy bandwidth.
#include "core/cuda_check.cuh"
#include "elementwise/elementwise_cuda.h"

namespace fl {
namespace cuda {
namespace {

__device__ __forceinline__ float apply(UnaryOp op, float x, float slope) {
  switch (op) {
    case UnaryOp::relu: return x > 0.0f ? x : (x == x ? 0.0f : x);
    case UnaryOp::leaky_relu: return x >= 0.0f ? x : x * slope;
    case UnaryOp::sigmoid: return 1.0f / (1.0f + expf(-x));
    case UnaryOp::tanh: return tanhf(x);
    case UnaryOp::gelu: return 0.5f * x * erfcf(-x * 0.70710678118654752f);
    case UnaryOp::gelu_tanh: {
      const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + tanhf(u));
    }
  }
  return x;
}

__device__ __forceinline__ float derivative(UnaryOp op, float x, float slope) {
  switch (op) {
    case UnaryOp::relu: return x > 0.0f ? 1.0f : 0.0f;
    case UnaryOp::leaky_relu: return x >= 0.0f ? 1.0f : slope;
    case UnaryOp::sigmoid: { const float s = 1.0f / (1.0f + expf(-x)); return s * (1.0f - s); }
    case UnaryOp::tanh: { const float t = tanhf(x); return 1.0f - t * t; }
    case UnaryOp::gelu:
      return 0.5f * erfcf(-x * 0.70710678118654752f) + x * 0.39894228040143268f * expf(-0.5f * x * x);
    case UnaryOp::gelu_tanh: {
      const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
      const float t = tanhf(u);
      const float du = 0.79788456080286536f * (1.0f + 3.0f * 0.044715f * x * x);
      return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    }
  }
  return 1.0f;
}

__global__ void unary_forward_kernel(UnaryOp op, const float* __restrict__ x, float* __restrict__ y,
                                     int64_t n, float slope) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool vec = (reinterpret_cast<uintptr_t>(x) % 16 == 0) && (reinterpret_cast<uintptr_t>(y) % 16 == 0);
  if (vec) {
    const int64_t n4 = n / 4;
    for (int64_t j = i; j < n4; j += stride) {
      float4 v = reinterpret_cast<const float4*>(x)[j];
      v.x = apply(op, v.x, slope); v.y = apply(op, v.y, slope);
      v.z = apply(op, v.z, slope); v.w = apply(op, v.w, slope);
      reinterpret_cast<float4*>(y)[j] = v;
    }
    for (int64_t j = n4 * 4 + i; j < n; j += stride) y[j] = apply(op, x[j], slope);
  } else {
    for (; i < n; i += stride) y[i] = apply(op, x[i], slope);
  }
}

__global__ void unary_backward_kernel(UnaryOp op, const float* __restrict__ g, const float* __restrict__ x,
                                      float* __restrict__ dx, int64_t n, float slope) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dx[i] = g[i] * derivative(op, x[i], slope);
}

}  // namespace

void unary_forward(UnaryOp op, const float* x, float* y, index_t n, float slope, Stream stream) {
  if (n == 0) return;
  constexpr int kThreads = 256;
  unary_forward_kernel<<<blocks_for((n + 3) / 4, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      op, x, y, n, slope);
  check_launch("unary_forward_kernel");
}

void unary_backward(UnaryOp op, const float* grad, const float* x, const float* /*y*/, float* dx, index_t n,
                    float slope, Stream stream) {
  if (n == 0) return;
  constexpr int kThreads = 256;
  unary_backward_kernel<<<blocks_for(n, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      op, grad, x, dx, n, slope);
  check_launch("unary_backward_kernel");
}

}  // namespace cuda
}  // namespace fl
