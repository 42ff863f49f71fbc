// Dropout and embedding on the GPU.
//   dropout: the keep decision of element i is hash(seed, i) >= p (core/cuda_math.cuh), a
//     pure function of (seed, i): reproducible across launch shapes and devices. float4
//     loads/stores with 4 mask bytes as one 32-bit store when aligned.
//   embedding: one row of `dim` floats per index, threads along dim (coalesced); backward
//     scatter-adds rows with atomics (indices repeat), into a zeroed dweight.
#include <cstdint>

#include "core/cuda_check.cuh"
#include "core/cuda_math.cuh"
#include "misc/misc_cuda.h"

namespace fl {
namespace cuda {
namespace {

__device__ __forceinline__ bool keep_elem(uint64_t seed, int64_t i, float p) {
  return hash_uniform(seed, uint64_t(i)) >= p;
}

__global__ void dropout_fwd_kernel(const float* __restrict__ x, float* __restrict__ y, uint8_t* __restrict__ mask,
                                   int64_t n, float p, float scale, uint64_t seed) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  const int64_t i0 = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool vec = reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(mask) % 4 == 0;
  int64_t tail = 0;
  if (vec) {
    const int64_t n4 = n / 4;
    for (int64_t j = i0; j < n4; j += stride) {
      const float4 v = reinterpret_cast<const float4*>(x)[j];
      const bool k0 = keep_elem(seed, 4 * j, p), k1 = keep_elem(seed, 4 * j + 1, p);
      const bool k2 = keep_elem(seed, 4 * j + 2, p), k3 = keep_elem(seed, 4 * j + 3, p);
      reinterpret_cast<float4*>(y)[j] =
          make_float4(k0 ? v.x * scale : 0.0f, k1 ? v.y * scale : 0.0f, k2 ? v.z * scale : 0.0f, k3 ? v.w * scale : 0.0f);
      reinterpret_cast<uint32_t*>(mask)[j] =
          uint32_t(k0) | (uint32_t(k1) << 8) | (uint32_t(k2) << 16) | (uint32_t(k3) << 24);  // little-endian bytes
    }
    tail = n4 * 4;
  }
  for (int64_t j = tail + i0; j < n; j += stride) {
    const bool k = keep_elem(seed, j, p);
    y[j] = k ? x[j] * scale : 0.0f;
    mask[j] = uint8_t(k);
  }
}

__global__ void dropout_bwd_kernel(const float* __restrict__ g, const uint8_t* __restrict__ mask,
                                   float* __restrict__ dx, int64_t n, float scale) {
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < n; j += int64_t(blockDim.x) * gridDim.x)
    dx[j] = mask[j] ? g[j] * scale : 0.0f;
}

// Block (32, 8): threadIdx.x walks dim, threadIdx.y picks one of 8 indices.
__global__ void embedding_fwd_kernel(const int64_t* __restrict__ idx, const float* __restrict__ w,
                                     float* __restrict__ y, int64_t n_idx, int64_t num, int64_t dim) {
  for (int64_t r = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; r < n_idx; r += int64_t(gridDim.x) * blockDim.y) {
    const int64_t k = idx[r];
    const bool ok = k >= 0 && k < num;
    float* yr = y + r * dim;
    const float* wr = w + (ok ? k : 0) * dim;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) yr[j] = ok ? wr[j] : NAN;
  }
}

__global__ void embedding_bwd_kernel(const float* __restrict__ g, const int64_t* __restrict__ idx,
                                     float* __restrict__ dw, int64_t n_idx, int64_t num, int64_t dim) {
  for (int64_t r = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; r < n_idx; r += int64_t(gridDim.x) * blockDim.y) {
    const int64_t k = idx[r];
    if (k < 0 || k >= num) continue;
    const float* gr = g + r * dim;
    float* dr = dw + k * dim;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) atomicAdd(dr + j, gr[j]);
  }
}

}  // namespace

void dropout_forward(const float* x, float* y, uint8_t* mask, index_t n, float p, uint64_t seed, Stream stream) {
  FL_CHECK(p >= 0.0f && p <= 1.0f, "dropout: p must be in [0, 1], got ", p);
  if (n == 0) return;
  // p == 1 drops everything; the scale is then never applied (no 0 * inf).
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  dropout_fwd_kernel<<<blocks_for((n + 3) / 4, 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(x, y, mask, n, p,
                                                                                                  scale, seed);
  check_launch("dropout_fwd_kernel");
}

void dropout_backward(const float* grad, const uint8_t* mask, float* dx, index_t n, float scale, Stream stream) {
  if (n == 0) return;
  dropout_bwd_kernel<<<blocks_for(n, 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(grad, mask, dx, n, scale);
  check_launch("dropout_bwd_kernel");
}

void embedding_forward(const int64_t* idx, const float* weight, float* y, index_t n_idx, index_t num, index_t dim,
                       Stream stream) {
  if (n_idx == 0 || dim == 0) return;
  embedding_fwd_kernel<<<blocks_for(n_idx, 8), dim3(32, 8), 0, static_cast<cudaStream_t>(stream)>>>(idx, weight, y,
                                                                                                    n_idx, num, dim);
  check_launch("embedding_fwd_kernel");
}

void embedding_backward(const float* grad, const int64_t* idx, float* dweight, index_t n_idx, index_t num,
                        index_t dim, Stream stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  if (num * dim == 0) return;
  FL_CUDA_CHECK(cudaMemsetAsync(dweight, 0, sizeof(float) * num * dim, s));
  if (n_idx == 0) return;
  embedding_bwd_kernel<<<blocks_for(n_idx, 8), dim3(32, 8), 0, s>>>(grad, idx, dweight, n_idx, num, dim);
  check_launch("embedding_bwd_kernel");
}

}  // namespace cuda
}  // namespace fl
