// Elementwise activations on the GPU: grid-stride loops, float4 loads and stores when both
// arrays are 16-byte aligned (CuPy's allocations are 256-byte aligned, so in practice always),
// scalar tail. Memory-bound: the figure of merit is GB/s against the device's copy bandwidth
// (forward 8 bytes per element, backward 12).
// The scalar math is core/cuda_math.cuh's (shared with the GEMM epilogue); tanh avoids the
// tanh.approx that --use_fast_math would substitute for tanhf.
#include "core/cuda_check.cuh"
#include "core/cuda_math.cuh"
#include "elementwise/elementwise_cuda.h"

namespace fl {
namespace cuda {
namespace {

__device__ __forceinline__ float apply(UnaryOp op, float x, float slope) {
  switch (op) {
    case UnaryOp::relu: return relu_d(x);
    case UnaryOp::leaky_relu: return x >= 0.0f ? x : x * slope;
    case UnaryOp::sigmoid: return sigmoid_d(x);
    case UnaryOp::tanh: return tanh_d(x);
    case UnaryOp::gelu: return gelu_d(x);
    case UnaryOp::gelu_tanh: return gelu_tanh_d(x);
  }
  return x;
}

__device__ __forceinline__ float derivative(UnaryOp op, float x, float slope) {
  switch (op) {
    case UnaryOp::relu: return x > 0.0f ? 1.0f : 0.0f;
    case UnaryOp::leaky_relu: return x >= 0.0f ? 1.0f : slope;
    case UnaryOp::sigmoid: { const float s = sigmoid_d(x); return s * (1.0f - s); }
    case UnaryOp::tanh: { const float t = tanh_d(x); return 1.0f - t * t; }
    case UnaryOp::gelu:
      return 0.5f * erfcf(-x * kInvSqrt2) + x * kInvSqrt2Pi * __expf(-0.5f * x * x);
    case UnaryOp::gelu_tanh: {
      const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
      const float t = tanh_d(u);
      const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
      return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    }
  }
  return 1.0f;
}

__device__ __forceinline__ bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

__global__ void unary_forward_kernel(UnaryOp op, const float* __restrict__ x, float* __restrict__ y,
                                     int64_t n, float slope) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (aligned16(x) && aligned16(y)) {
    const int64_t n4 = n / 4;
    for (int64_t j = i; j < n4; j += stride) {
      float4 v = reinterpret_cast<const float4*>(x)[j];
      v.x = apply(op, v.x, slope); v.y = apply(op, v.y, slope);
      v.z = apply(op, v.z, slope); v.w = apply(op, v.w, slope);
      reinterpret_cast<float4*>(y)[j] = v;
    }
    for (int64_t j = n4 * 4 + i; j < n; j += stride) y[j] = apply(op, x[j], slope);
  } else {
    for (int64_t j = i; j < n; j += stride) y[j] = apply(op, x[j], slope);
  }
}

__global__ void unary_backward_kernel(UnaryOp op, const float* __restrict__ g, const float* __restrict__ x,
                                      float* __restrict__ dx, int64_t n, float slope) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (aligned16(g) && aligned16(x) && aligned16(dx)) {
    const int64_t n4 = n / 4;
    for (int64_t j = i; j < n4; j += stride) {
      const float4 gv = reinterpret_cast<const float4*>(g)[j];
      const float4 xv = reinterpret_cast<const float4*>(x)[j];
      float4 d;
      d.x = gv.x * derivative(op, xv.x, slope); d.y = gv.y * derivative(op, xv.y, slope);
      d.z = gv.z * derivative(op, xv.z, slope); d.w = gv.w * derivative(op, xv.w, slope);
      reinterpret_cast<float4*>(dx)[j] = d;
    }
    for (int64_t j = n4 * 4 + i; j < n; j += stride) dx[j] = g[j] * derivative(op, x[j], slope);
  } else {
    for (int64_t j = i; j < n; j += stride) dx[j] = g[j] * derivative(op, x[j], slope);
  }
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
  unary_backward_kernel<<<blocks_for((n + 3) / 4, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      op, grad, x, dx, n, slope);
  check_launch("unary_backward_kernel");
}

}  // namespace cuda
}  // namespace fl
