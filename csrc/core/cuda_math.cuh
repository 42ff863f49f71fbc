// Device-side helpers shared by the *.cu files: activations (the same formulas as
// elementwise/activation_math.h, so the GEMM epilogue and the elementwise kernels agree),
// warp/block reductions, and a counter-based hash for dropout. Device code only: included by
// *.cu files, never by the bindings.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace fl {
namespace cuda {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kSqrt2OverPi = 0.79788456080286536f;
constexpr float kGeluCubic = 0.044715f;

// 1 / (1 + e^-x) without overflow on either side (x < 0: e^x / (1 + e^x)).
__device__ __forceinline__ float sigmoid_d(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  const float e = expf(x);
  return e / (1.0f + e);
}

// tanh from expm1f: the build's --use_fast_math turns tanhf into tanh.approx.f32 (relative
// error up to ~5e-4, checked in the PTX of nvcc 13.0), too coarse for 1e-4 tests; expm1f
// keeps full relative accuracy near 0 and t / (t + 2) is exact to a few ulp elsewhere.
__device__ __forceinline__ float tanh_d(float x) {
  const float ax = fabsf(x);
  if (ax > 9.0f) return copysignf(1.0f, x);  // 1 - tanh(9) = 3e-8: rounds to 1 in float
  const float t = expm1f(2.0f * ax);
  return copysignf(t / (t + 2.0f), x);  // NaN stays NaN
}

__device__ __forceinline__ float relu_d(float x) { return x > 0.0f ? x : (x == x ? 0.0f : x); }
__device__ __forceinline__ float gelu_d(float x) { return 0.5f * x * erfcf(-x * kInvSqrt2); }
__device__ __forceinline__ float gelu_tanh_d(float x) {
  const float u = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  return 0.5f * x * (1.0f + tanh_d(u));
}

// The GEMM epilogue's activation codes (fl::Activation in gemm/gemm.h):
// 0 none, 1 relu, 2 gelu, 3 gelu_tanh, 4 tanh, 5 sigmoid.
__device__ __forceinline__ float gemm_act(int act, float v) {
  switch (act) {
    case 1: return relu_d(v);
    case 2: return gelu_d(v);
    case 3: return gelu_tanh_d(v);
    case 4: return tanh_d(v);
    case 5: return sigmoid_d(v);
    default: return v;
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets
// the total. `red` holds 32 floats of shared memory; it may be reused after the call.
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // `red` may still be read by a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nwarps ? red[lane] : 0.0f;
  return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nwarps ? red[lane] : -INFINITY;
  return warp_max(v);
}

// Online softmax state merge: (m, s) with s = sum exp(x - m). -inf maxima merge safely.
__device__ __forceinline__ void online_merge(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  if (mn == -INFINITY) return;  // both empty
  s = s * __expf(m - mn) + s2 * __expf(m2 - mn);
  m = mn;
}

// A counter-based hash (the "lowbias32" finaliser applied twice with the key mixed in):
// the same (seed, index) gives the same bits on any launch configuration, which is what
// makes dropout reproducible and lets its mask be recomputed. Passes the usual avalanche
// tests; statistical quality far beyond what a dropout mask needs.
__device__ __forceinline__ uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

__device__ __forceinline__ uint32_t hash_u32(uint64_t seed, uint64_t index) {
  uint32_t h = mix32(static_cast<uint32_t>(index) ^ mix32(static_cast<uint32_t>(seed)));
  h = mix32(h ^ static_cast<uint32_t>(index >> 32) ^ mix32(static_cast<uint32_t>(seed >> 32) + 0x9e3779b9U));
  return h;
}

// Uniform in [0, 1) with 24 bits.
__device__ __forceinline__ float hash_uniform(uint64_t seed, uint64_t index) {
  return static_cast<float>(hash_u32(seed, index) >> 8) * (1.0f / 16777216.0f);
}

}  // namespace cuda
}  // namespace fl
