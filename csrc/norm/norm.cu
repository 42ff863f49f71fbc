// layer_norm and batch_norm on the GPU. Statistics in float32 with two passes (mean, then
// the mean of squared deviations: no cancellation however large the mean), read back from
// L1/L2 rather than device memory for rows that fit there.
//   layer_norm: one warp per row (cols <= 1024) or one 256-thread block per row; the
//     backward's dweight/dbias are column sums over rows: 32 columns x 64 rows per block,
//     reduced in shared memory, then one atomicAdd per column per block.
//   batch_norm: one 256-thread block per channel for the statistics and the backward's
//     sums; the elementwise passes are grid-stride loops.
#include "core/cuda_check.cuh"
#include "core/cuda_math.cuh"
#include "norm/norm_cuda.h"

namespace fl {
namespace cuda {
namespace {

template <int THREADS>
__device__ __forceinline__ float group_sum(float v, float* red) {
  if (THREADS > 32) return block_sum(v, red);
  return warp_sum(v);
}

template <int THREADS>
__global__ void layer_norm_fwd_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                      const float* __restrict__ b, float* __restrict__ y, float* __restrict__ mean_out,
                                      float* __restrict__ rstd_out, int64_t rows, int64_t cols, float eps) {
  __shared__ float red[32];
  constexpr int kRowsPerBlock = 256 / THREADS;
  const int sub = threadIdx.x / THREADS, t = threadIdx.x % THREADS;
  const float inv_cols = 1.0f / float(cols);
  for (int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + sub; row - sub < rows;
       row += int64_t(gridDim.x) * kRowsPerBlock) {
    const bool live = row < rows;  // all threads stay for the barriers
    const float* xr = x + (live ? row : 0) * cols;
    float acc = 0.0f;
    if (live)
      for (int64_t i = t; i < cols; i += THREADS) acc += xr[i];
    const float mean = group_sum<THREADS>(acc, red) * inv_cols;
    acc = 0.0f;
    if (live)
      for (int64_t i = t; i < cols; i += THREADS) {
        const float d = xr[i] - mean;
        acc += d * d;
      }
    const float rstd = rsqrtf(group_sum<THREADS>(acc, red) * inv_cols + eps);
    if (live) {
      float* yr = y + row * cols;
      for (int64_t i = t; i < cols; i += THREADS) {
        float v = (xr[i] - mean) * rstd;
        if (w) v *= w[i];
        if (b) v += b[i];
        yr[i] = v;
      }
      if (t == 0) {
        if (mean_out) mean_out[row] = mean;
        if (rstd_out) rstd_out[row] = rstd;
      }
    }
  }
}

// dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)), gw = g * w.
template <int THREADS>
__global__ void layer_norm_bwd_kernel(const float* __restrict__ g, const float* __restrict__ x,
                                      const float* __restrict__ w, float* __restrict__ dx, float* __restrict__ stats,
                                      int64_t rows, int64_t cols, float eps) {
  __shared__ float red[32];
  constexpr int kRowsPerBlock = 256 / THREADS;
  const int sub = threadIdx.x / THREADS, t = threadIdx.x % THREADS;
  const float inv_cols = 1.0f / float(cols);
  for (int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + sub; row - sub < rows;
       row += int64_t(gridDim.x) * kRowsPerBlock) {
    const bool live = row < rows;
    const int64_t off = (live ? row : 0) * cols;
    const float* xr = x + off;
    const float* gr = g + off;
    float acc = 0.0f;
    if (live)
      for (int64_t i = t; i < cols; i += THREADS) acc += xr[i];
    const float mean = group_sum<THREADS>(acc, red) * inv_cols;
    acc = 0.0f;
    if (live)
      for (int64_t i = t; i < cols; i += THREADS) {
        const float d = xr[i] - mean;
        acc += d * d;
      }
    const float rstd = rsqrtf(group_sum<THREADS>(acc, red) * inv_cols + eps);
    float sa = 0.0f, sb = 0.0f;
    if (live)
      for (int64_t i = t; i < cols; i += THREADS) {
        const float gw = w ? gr[i] * w[i] : gr[i];
        sa += gw;
        sb += gw * (xr[i] - mean) * rstd;
      }
    sa = group_sum<THREADS>(sa, red) * inv_cols;
    sb = group_sum<THREADS>(sb, red) * inv_cols;
    if (live) {
      float* dr = dx + off;
      for (int64_t i = t; i < cols; i += THREADS) {
        const float gw = w ? gr[i] * w[i] : gr[i];
        dr[i] = rstd * (gw - sa - (xr[i] - mean) * rstd * sb);
      }
      if (t == 0) {
        stats[row] = mean;
        stats[rows + row] = rstd;
      }
    }
  }
}

constexpr int kColRows = 64;  // rows per block of the column sums

// dweight[c] += sum_r g[r, c] * xhat[r, c];  dbias[c] += sum_r g[r, c]. Block (32, 8).
__global__ void layer_norm_wb_kernel(const float* __restrict__ g, const float* __restrict__ x,
                                     const float* __restrict__ stats, float* __restrict__ dw, float* __restrict__ db,
                                     int64_t rows, int64_t cols) {
  __shared__ float sw[8][33], sb[8][33];
  const int64_t col = int64_t(blockIdx.x) * 32 + threadIdx.x;
  float aw = 0.0f, ab = 0.0f;
  if (col < cols) {
    for (int64_t r0 = int64_t(blockIdx.y) * kColRows; r0 < rows; r0 += int64_t(gridDim.y) * kColRows) {
      const int64_t r1 = r0 + kColRows < rows ? r0 + kColRows : rows;
      for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
        const float gv = g[r * cols + col];
        aw += gv * (x[r * cols + col] - stats[r]) * stats[rows + r];
        ab += gv;
      }
    }
  }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    for (int j = 1; j < 8; ++j) {
      aw += sw[j][threadIdx.x];
      ab += sb[j][threadIdx.x];
    }
    if (dw) atomicAdd(dw + col, aw);
    if (db) atomicAdd(db + col, ab);
  }
}

// ---- batch_norm -------------------------------------------------------------------------
__device__ __forceinline__ int64_t bn_offset(int64_t e, int64_t ch, int64_t c, int64_t hw) {
  const int64_t nn = e / hw;
  return (nn * c + ch) * hw + (e - nn * hw);
}

__global__ void bn_stats_kernel(const float* __restrict__ x, float* __restrict__ mean, float* __restrict__ invstd,
                                float* __restrict__ running_mean, float* __restrict__ running_var, int64_t n,
                                int64_t c, int64_t hw, float momentum, float eps) {
  __shared__ float red[32];
  const int64_t ch = blockIdx.x;
  const int64_t count = n * hw;
  float acc = 0.0f;
  for (int64_t e = threadIdx.x; e < count; e += blockDim.x) acc += x[bn_offset(e, ch, c, hw)];
  const float mu = block_sum(acc, red) / float(count);
  acc = 0.0f;
  for (int64_t e = threadIdx.x; e < count; e += blockDim.x) {
    const float d = x[bn_offset(e, ch, c, hw)] - mu;
    acc += d * d;
  }
  const float var = block_sum(acc, red) / float(count);
  if (threadIdx.x == 0) {
    mean[ch] = mu;
    invstd[ch] = rsqrtf(var + eps);
    // PyTorch's running_var takes the unbiased variance; one value per channel has none
    // (PyTorch refuses that case; the Python layer does too).
    const float unbiased = count > 1 ? var * (float(count) / float(count - 1)) : var;
    if (running_mean) running_mean[ch] = (1.0f - momentum) * running_mean[ch] + momentum * mu;
    if (running_var) running_var[ch] = (1.0f - momentum) * running_var[ch] + momentum * unbiased;
  }
}

// y = (x - mean) * invstd * w + b; eval mode takes invstd from the running variance.
__global__ void bn_apply_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                                const float* __restrict__ mean, const float* __restrict__ invstd,
                                const float* __restrict__ running_var, float* __restrict__ y, int64_t total,
                                int64_t c, int64_t hw, float eps) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ch = (e / hw) % c;
    const float is = invstd ? invstd[ch] : rsqrtf(running_var[ch] + eps);
    float v = (x[e] - mean[ch]) * is;
    if (w) v *= w[ch];
    if (b) v += b[ch];
    y[e] = v;
  }
}

__global__ void bn_grad_sums_kernel(const float* __restrict__ g, const float* __restrict__ x,
                                    const float* __restrict__ mean, const float* __restrict__ invstd,
                                    float* __restrict__ sums, int64_t n, int64_t c, int64_t hw) {
  __shared__ float red[32];
  const int64_t ch = blockIdx.x;
  const int64_t count = n * hw;
  const float mu = mean[ch], is = invstd[ch];
  float sg = 0.0f, sgx = 0.0f;
  for (int64_t e = threadIdx.x; e < count; e += blockDim.x) {
    const int64_t q = bn_offset(e, ch, c, hw);
    sg += g[q];
    sgx += g[q] * (x[q] - mu) * is;
  }
  sg = block_sum(sg, red);
  sgx = block_sum(sgx, red);
  if (threadIdx.x == 0) {
    sums[ch] = sg;
    sums[c + ch] = sgx;
  }
}

__global__ void bn_dx_kernel(const float* __restrict__ g, const float* __restrict__ x, const float* __restrict__ w,
                             const float* __restrict__ mean, const float* __restrict__ invstd,
                             const float* __restrict__ sums, float* __restrict__ dx, int64_t total, int64_t c,
                             int64_t hw, float inv_count, bool training) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ch = (e / hw) % c;
    const float is = invstd[ch];
    const float scale = w ? w[ch] * is : is;
    if (training) {
      const float xhat = (x[e] - mean[ch]) * is;
      dx[e] = scale * (g[e] - sums[ch] * inv_count - xhat * sums[c + ch] * inv_count);
    } else {
      dx[e] = scale * g[e];
    }
  }
}

}  // namespace

void layer_norm_forward(const float* x, const float* weight, const float* bias, float* y, float* mean, float* rstd,
                        index_t rows, index_t cols, float eps, Stream stream) {
  if (rows == 0 || cols == 0) return;
  const auto s = static_cast<cudaStream_t>(stream);
  if (cols <= 1024)
    layer_norm_fwd_kernel<32><<<blocks_for(rows, 8), 256, 0, s>>>(x, weight, bias, y, mean, rstd, rows, cols, eps);
  else
    layer_norm_fwd_kernel<256><<<blocks_for(rows, 1), 256, 0, s>>>(x, weight, bias, y, mean, rstd, rows, cols, eps);
  check_launch("layer_norm_fwd_kernel");
}

void layer_norm_backward(const float* grad, const float* x, const float* weight, float* dx, float* dweight,
                         float* dbias, float* stats, index_t rows, index_t cols, float eps, Stream stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  if (dweight && cols) FL_CUDA_CHECK(cudaMemsetAsync(dweight, 0, sizeof(float) * cols, s));
  if (dbias && cols) FL_CUDA_CHECK(cudaMemsetAsync(dbias, 0, sizeof(float) * cols, s));
  if (rows == 0 || cols == 0) return;
  if (cols <= 1024)
    layer_norm_bwd_kernel<32><<<blocks_for(rows, 8), 256, 0, s>>>(grad, x, weight, dx, stats, rows, cols, eps);
  else
    layer_norm_bwd_kernel<256><<<blocks_for(rows, 1), 256, 0, s>>>(grad, x, weight, dx, stats, rows, cols, eps);
  check_launch("layer_norm_bwd_kernel");
  if (dweight || dbias) {
    const int64_t gx = (cols + 31) / 32;
    int64_t gy = (rows + kColRows - 1) / kColRows;
    if (gy > 65535) gy = 65535;  // the kernel strides over the remaining row groups
    FL_CHECK(gx <= 2147483647LL, "layer_norm_backward: too many columns");
    layer_norm_wb_kernel<<<dim3(unsigned(gx), unsigned(gy)), dim3(32, 8), 0, s>>>(grad, x, stats, dweight, dbias,
                                                                                   rows, cols);
    check_launch("layer_norm_wb_kernel");
  }
}

void batch_norm_forward(const float* x, const float* weight, const float* bias, float* y, float* mean, float* invstd,
                        float* running_mean, float* running_var, index_t n, index_t c, index_t hw, bool training,
                        float momentum, float eps, Stream stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  const int64_t total = n * c * hw;
  if (training) {
    if (c == 0) return;
    FL_CHECK(n * hw > 0, "batch_norm: training needs at least one value per channel");
    FL_CHECK(c <= 2147483647LL, "batch_norm: too many channels");
    bn_stats_kernel<<<unsigned(c), 256, 0, s>>>(x, mean, invstd, running_mean, running_var, n, c, hw, momentum, eps);
    check_launch("bn_stats_kernel");
    bn_apply_kernel<<<blocks_for(total, 256), 256, 0, s>>>(x, weight, bias, mean, invstd, nullptr, y, total, c, hw,
                                                           eps);
  } else {
    if (total == 0) return;
    bn_apply_kernel<<<blocks_for(total, 256), 256, 0, s>>>(x, weight, bias, running_mean, nullptr, running_var, y,
                                                           total, c, hw, eps);
  }
  check_launch("bn_apply_kernel");
}

void batch_norm_backward(const float* grad, const float* x, const float* weight, const float* mean,
                         const float* invstd, float* dx, float* sums, index_t n, index_t c, index_t hw, bool training,
                         Stream stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  if (c == 0) return;
  FL_CHECK(c <= 2147483647LL, "batch_norm_backward: too many channels");
  bn_grad_sums_kernel<<<unsigned(c), 256, 0, s>>>(grad, x, mean, invstd, sums, n, c, hw);
  check_launch("bn_grad_sums_kernel");
  const int64_t total = n * c * hw;
  if (total == 0) return;
  bn_dx_kernel<<<blocks_for(total, 256), 256, 0, s>>>(grad, x, weight, mean, invstd, sums, dx, total, c, hw,
                                                      1.0f / float(n * hw), training);
  check_launch("bn_dx_kernel");
}

}  // namespace cuda
}  // namespace fl
