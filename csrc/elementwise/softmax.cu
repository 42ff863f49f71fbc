// Softmax / log-softmax on the GPU over the middle axis of (outer, len, inner).
//   inner == 1 (the last axis): one warp per row when len <= 1024, else one 256-thread block
//     per row. One pass keeps a running (max, sum of exp(x - max)) per thread (online
//     softmax), merged across the warp/block; a second pass writes. Two reads of x, one write.
//   inner > 1: one thread per (outer, inner) column walking len with stride inner, so a
//     warp's accesses are 32 consecutive floats.
// Backward: softmax dx = y (g - sum(g y)); log-softmax dx = g - exp(y) sum(g).
#include "core/cuda_check.cuh"
#include "core/cuda_math.cuh"
#include "elementwise/softmax_cuda.h"

namespace fl {
namespace cuda {
namespace {

__device__ __forceinline__ void online_add(float& m, float& s, float x) {
  if (x > m) {
    s = s * __expf(m - x) + 1.0f;  // m = -inf the first time: s * 0 + 1
    m = x;
  } else if (m != -INFINITY) {
    s += __expf(x - m);  // NaN x lands here and makes s NaN, as it should
  }
}

// Merge (m, s) across the THREADS threads that share a row: a warp, or the whole block.
template <int THREADS>
__device__ __forceinline__ void row_merge(float& m, float& s, float* red_m, float* red_s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    online_merge(m, s, m2, s2);
  }
  if (THREADS > 32) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) {
      red_m[warp] = m;
      red_s[warp] = s;
    }
    __syncthreads();
    m = lane < THREADS / 32 ? red_m[lane] : -INFINITY;
    s = lane < THREADS / 32 ? red_s[lane] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
      const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
      online_merge(m, s, m2, s2);
    }
  }
}

template <int THREADS>
__device__ __forceinline__ float row_sum(float v, float* red) {
  if (THREADS > 32) return block_sum(v, red);  // (it starts with the warp reduction)
  return warp_sum(v);
}

// THREADS threads per row: 32 -> blockDim 256 holds 8 rows; 256 -> one row per block.
template <int THREADS>
__global__ void softmax_rows_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int64_t len,
                                    bool log) {
  __shared__ float red_m[32], red_s[32];
  constexpr int kRowsPerBlock = 256 / THREADS;
  const int sub = threadIdx.x / THREADS, t = threadIdx.x % THREADS;
  for (int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + sub; row - sub < rows;
       row += int64_t(gridDim.x) * kRowsPerBlock) {
    // (row - sub < rows keeps every thread of a block in the loop together for the barriers)
    const bool live = row < rows;
    const float* xr = x + (live ? row : 0) * len;
    float m = -INFINITY, s = 0.0f;
    if (live)
      for (int64_t i = t; i < len; i += THREADS) online_add(m, s, xr[i]);
    row_merge<THREADS>(m, s, red_m, red_s);
    if (live) {
      float* yr = y + row * len;
      if (log) {
        const float lse = m + __logf(s);
        for (int64_t i = t; i < len; i += THREADS) yr[i] = xr[i] - lse;
      } else {
        const float inv = 1.0f / s;
        for (int64_t i = t; i < len; i += THREADS) yr[i] = __expf(xr[i] - m) * inv;
      }
    }
  }
}

__global__ void softmax_cols_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t outer, int64_t len,
                                    int64_t inner, bool log) {
  const int64_t total = outer * inner;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = e / inner, i = e - o * inner;
    const float* xc = x + o * len * inner + i;
    float* yc = y + o * len * inner + i;
    float m = -INFINITY, s = 0.0f;
    for (int64_t j = 0; j < len; ++j) online_add(m, s, xc[j * inner]);
    if (log) {
      const float lse = m + __logf(s);
      for (int64_t j = 0; j < len; ++j) yc[j * inner] = xc[j * inner] - lse;
    } else {
      const float inv = 1.0f / s;
      for (int64_t j = 0; j < len; ++j) yc[j * inner] = __expf(xc[j * inner] - m) * inv;
    }
  }
}

template <int THREADS>
__global__ void softmax_back_rows_kernel(const float* __restrict__ g, const float* __restrict__ y,
                                         float* __restrict__ dx, int64_t rows, int64_t len, bool log) {
  __shared__ float red[32];
  constexpr int kRowsPerBlock = 256 / THREADS;
  const int sub = threadIdx.x / THREADS, t = threadIdx.x % THREADS;
  for (int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + sub; row - sub < rows;
       row += int64_t(gridDim.x) * kRowsPerBlock) {
    const bool live = row < rows;
    const int64_t off = (live ? row : 0) * len;
    float acc = 0.0f;
    if (live)
      for (int64_t i = t; i < len; i += THREADS) acc += log ? g[off + i] : g[off + i] * y[off + i];
    acc = row_sum<THREADS>(acc, red);
    if (live) {
      for (int64_t i = t; i < len; i += THREADS)
        dx[off + i] = log ? g[off + i] - __expf(y[off + i]) * acc : y[off + i] * (g[off + i] - acc);
    }
  }
}

__global__ void softmax_back_cols_kernel(const float* __restrict__ g, const float* __restrict__ y,
                                         float* __restrict__ dx, int64_t outer, int64_t len, int64_t inner,
                                         bool log) {
  const int64_t total = outer * inner;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = e / inner, i = e - o * inner;
    const int64_t base = o * len * inner + i;
    float acc = 0.0f;
    for (int64_t j = 0; j < len; ++j) {
      const int64_t q = base + j * inner;
      acc += log ? g[q] : g[q] * y[q];
    }
    for (int64_t j = 0; j < len; ++j) {
      const int64_t q = base + j * inner;
      dx[q] = log ? g[q] - __expf(y[q]) * acc : y[q] * (g[q] - acc);
    }
  }
}

}  // namespace

void softmax_forward(const float* x, float* y, index_t outer, index_t len, index_t inner, bool log, Stream stream) {
  if (outer * len * inner == 0) return;
  const auto s = static_cast<cudaStream_t>(stream);
  if (inner == 1) {
    if (len <= 1024) {
      softmax_rows_kernel<32><<<blocks_for(outer, 8), 256, 0, s>>>(x, y, outer, len, log);
    } else {
      softmax_rows_kernel<256><<<blocks_for(outer, 1), 256, 0, s>>>(x, y, outer, len, log);
    }
    check_launch("softmax_rows_kernel");
  } else {
    softmax_cols_kernel<<<blocks_for(outer * inner, 256), 256, 0, s>>>(x, y, outer, len, inner, log);
    check_launch("softmax_cols_kernel");
  }
}

void softmax_backward(const float* grad, const float* y, float* dx, index_t outer, index_t len, index_t inner,
                      bool log, Stream stream) {
  if (outer * len * inner == 0) return;
  const auto s = static_cast<cudaStream_t>(stream);
  if (inner == 1) {
    if (len <= 1024) {
      softmax_back_rows_kernel<32><<<blocks_for(outer, 8), 256, 0, s>>>(grad, y, dx, outer, len, log);
    } else {
      softmax_back_rows_kernel<256><<<blocks_for(outer, 1), 256, 0, s>>>(grad, y, dx, outer, len, log);
    }
    check_launch("softmax_back_rows_kernel");
  } else {
    softmax_back_cols_kernel<<<blocks_for(outer * inner, 256), 256, 0, s>>>(grad, y, dx, outer, len, inner, log);
    check_launch("softmax_back_cols_kernel");
  }
}

}  // namespace cuda
}  // namespace fl
