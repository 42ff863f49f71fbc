// Losses on the GPU, PyTorch's formulas:
//   mse                 (x - t)^2                                  d/dx 2 (x - t)
//   bce                 -(t max(log x, -100) + (1-t) max(log(1-x), -100))
//                                                                  d/dx (x - t) / max(x (1-x), 1e-12)
//   bce_with_logits     max(x, 0) - x t + log1p(exp(-|x|))         d/dx sigmoid(x) - t
//   cross_entropy       lse - (1-eps) x_y - eps/C sum_c x_c        d/dx_c softmax_c - (1-eps)[c = y] - eps/C
//                       (0 and excluded from the mean where y == ignore_index)
// Reductions ("mean", "sum") go through one deterministic block that sums in float64, so the
// loss of a given input is the same bits on every run.
#include "core/cuda_check.cuh"
#include "core/cuda_math.cuh"
#include "loss/loss_cuda.h"

namespace fl {
namespace cuda {
namespace {

// log with full relative accuracy near 1: --use_fast_math makes logf lg2.approx (absolute
// error ~2^-21, a large relative error when log x is ~1e-4); x - 1 is exact for x in [0.5, 2].
__device__ __forceinline__ float log_acc(float x) { return (x > 0.5f && x < 2.0f) ? log1pf(x - 1.0f) : logf(x); }

__device__ __forceinline__ float point_loss(PointLoss kind, float x, float t) {
  switch (kind) {
    case PointLoss::mse: {
      const float d = x - t;
      return d * d;
    }
    case PointLoss::bce: {
      const float lx = fmaxf(log_acc(x), -100.0f);
      const float l1x = fmaxf(log1pf(-x), -100.0f);
      return -(t * lx + (1.0f - t) * l1x);
    }
    case PointLoss::bce_logits:
      return fmaxf(x, 0.0f) - x * t + log1pf(__expf(-fabsf(x)));
  }
  return 0.0f;
}

__device__ __forceinline__ float point_grad(PointLoss kind, float x, float t) {
  switch (kind) {
    case PointLoss::mse: return 2.0f * (x - t);
    case PointLoss::bce: return (x - t) / fmaxf(x * (1.0f - x), 1e-12f);
    case PointLoss::bce_logits: return sigmoid_d(x) - t;
  }
  return 0.0f;
}

__global__ void point_loss_kernel(PointLoss kind, const float* __restrict__ x, const float* __restrict__ t,
                                  float* __restrict__ out, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = point_loss(kind, x[i], t[i]);
}

// grad_scalar: g has one element (reduction mean/sum), scaled by `scale`.
__global__ void point_grad_kernel(PointLoss kind, const float* __restrict__ g, const float* __restrict__ x,
                                  const float* __restrict__ t, float* __restrict__ dx, int64_t n, bool grad_scalar,
                                  float scale) {
  const float g0 = grad_scalar ? g[0] * scale : 0.0f;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = (grad_scalar ? g0 : g[i]) * point_grad(kind, x[i], t[i]);
}

constexpr int kReduceThreads = 1024;

__global__ void __launch_bounds__(kReduceThreads) sum_reduce_kernel(const float* __restrict__ v, int64_t n,
                                                                     float* __restrict__ out, float scale,
                                                                     const float* __restrict__ divisor) {
  __shared__ double red[32];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kReduceThreads) acc += double(v[i]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) red[warp] = acc;
  __syncthreads();
  if (warp == 0) {
    acc = red[lane];  // 1024 threads: exactly 32 warps
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) {
      double r = acc * double(scale);
      if (divisor) r /= double(*divisor);  // 0 / 0 -> NaN, as PyTorch's mean over nothing
      out[0] = float(r);
    }
  }
}

// ---- cross entropy ----------------------------------------------------------------------
struct CeArgs {
  int64_t n, c, d;
  float smoothing;
  int64_t ignore;
};

// Per position: max, lse, x_y and sum_c x_c over the class axis (stride d). Warp version for
// d == 1 (a row of C contiguous floats), thread version for d > 1 (coalesced across d).
__device__ __forceinline__ float ce_loss_value(float lse, float xy, float sumx, const CeArgs& a) {
  return lse - (1.0f - a.smoothing) * xy - a.smoothing / float(a.c) * sumx;
}

__global__ void ce_fwd_rows_kernel(const float* __restrict__ logits, const int64_t* __restrict__ target,
                                   float* __restrict__ elem, CeArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t row = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); row < a.n; row += warps) {
    const float* xr = logits + row * a.c;
    float m = -INFINITY, sumx = 0.0f;
    for (int64_t j = lane; j < a.c; j += 32) {
      m = fmaxf(m, xr[j]);
      sumx += xr[j];
    }
    m = warp_max(m);
    sumx = warp_sum(sumx);
    float s = 0.0f;
    for (int64_t j = lane; j < a.c; j += 32) s += __expf(xr[j] - m);
    s = warp_sum(s);
    if (lane == 0) {
      const int64_t y = target[row];
      float loss;
      if (y == a.ignore) loss = 0.0f;
      else if (y < 0 || y >= a.c) loss = NAN;  // validated by the caller; never read out of bounds
      else loss = ce_loss_value(m + __logf(s), xr[y], sumx, a);
      elem[row] = loss;
    }
  }
}

__global__ void ce_fwd_cols_kernel(const float* __restrict__ logits, const int64_t* __restrict__ target,
                                   float* __restrict__ elem, CeArgs a) {
  const int64_t total = a.n * a.d;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t nn = e / a.d, i = e - nn * a.d;
    const float* xc = logits + nn * a.c * a.d + i;
    float m = -INFINITY, sumx = 0.0f;
    for (int64_t j = 0; j < a.c; ++j) {
      m = fmaxf(m, xc[j * a.d]);
      sumx += xc[j * a.d];
    }
    float s = 0.0f;
    for (int64_t j = 0; j < a.c; ++j) s += __expf(xc[j * a.d] - m);
    const int64_t y = target[e];
    float loss;
    if (y == a.ignore) loss = 0.0f;
    else if (y < 0 || y >= a.c) loss = NAN;
    else loss = ce_loss_value(m + __logf(s), xc[y * a.d], sumx, a);
    elem[e] = loss;
  }
}

// Gradient scale of one position: "none" g[pos]; "sum" g[0]; "mean" g[0] / count.
__device__ __forceinline__ float ce_gscale(const float* g, const float* count, int reduction, int64_t pos) {
  if (reduction == 0) return g[pos];
  if (reduction == 1) return g[0] / *count;
  return g[0];
}

__global__ void ce_bwd_rows_kernel(const float* __restrict__ g, const float* __restrict__ logits,
                                   const int64_t* __restrict__ target, const float* __restrict__ count,
                                   float* __restrict__ dx, CeArgs a, int reduction) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  const float uni = a.smoothing / float(a.c);
  for (int64_t row = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); row < a.n; row += warps) {
    const float* xr = logits + row * a.c;
    float* dr = dx + row * a.c;
    const int64_t y = target[row];
    if (y == a.ignore || y < 0 || y >= a.c) {
      const float fill = y == a.ignore ? 0.0f : NAN;
      for (int64_t j = lane; j < a.c; j += 32) dr[j] = fill;
      continue;
    }
    float m = -INFINITY;
    for (int64_t j = lane; j < a.c; j += 32) m = fmaxf(m, xr[j]);
    m = warp_max(m);
    float s = 0.0f;
    for (int64_t j = lane; j < a.c; j += 32) s += __expf(xr[j] - m);
    s = warp_sum(s);
    const float inv = 1.0f / s;
    const float gs = ce_gscale(g, count, reduction, row);
    for (int64_t j = lane; j < a.c; j += 32) {
      const float p = __expf(xr[j] - m) * inv;
      dr[j] = gs * (p - uni - (j == y ? 1.0f - a.smoothing : 0.0f));
    }
  }
}

__global__ void ce_bwd_cols_kernel(const float* __restrict__ g, const float* __restrict__ logits,
                                   const int64_t* __restrict__ target, const float* __restrict__ count,
                                   float* __restrict__ dx, CeArgs a, int reduction) {
  const int64_t total = a.n * a.d;
  const float uni = a.smoothing / float(a.c);
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t nn = e / a.d, i = e - nn * a.d;
    const int64_t base = nn * a.c * a.d + i;
    const int64_t y = target[e];
    if (y == a.ignore || y < 0 || y >= a.c) {
      const float fill = y == a.ignore ? 0.0f : NAN;
      for (int64_t j = 0; j < a.c; ++j) dx[base + j * a.d] = fill;
      continue;
    }
    float m = -INFINITY;
    for (int64_t j = 0; j < a.c; ++j) m = fmaxf(m, logits[base + j * a.d]);
    float s = 0.0f;
    for (int64_t j = 0; j < a.c; ++j) s += __expf(logits[base + j * a.d] - m);
    const float inv = 1.0f / s;
    const float gs = ce_gscale(g, count, reduction, e);
    for (int64_t j = 0; j < a.c; ++j) {
      const float p = __expf(logits[base + j * a.d] - m) * inv;
      dx[base + j * a.d] = gs * (p - uni - (j == y ? 1.0f - a.smoothing : 0.0f));
    }
  }
}

}  // namespace

void sum_reduce(const float* v, index_t n, float* out, float scale, const float* divisor, Stream stream) {
  sum_reduce_kernel<<<1, kReduceThreads, 0, static_cast<cudaStream_t>(stream)>>>(v, n, out, scale, divisor);
  check_launch("sum_reduce_kernel");
}

void point_loss_forward(PointLoss kind, const float* input, const float* target, float* out, float* elem, index_t n,
                        int reduction, Stream stream) {
  FL_CHECK(reduction >= 0 && reduction <= 2, "loss: bad reduction code ", reduction);
  const auto s = static_cast<cudaStream_t>(stream);
  float* dst = reduction == 0 ? out : elem;
  if (n > 0) {
    point_loss_kernel<<<blocks_for(n, 256), 256, 0, s>>>(kind, input, target, dst, n);
    check_launch("point_loss_kernel");
  }
  // "mean" of nothing is 0 * (1/0) = NaN, as PyTorch; "sum" of nothing is 0.
  if (reduction != 0) sum_reduce(elem, n, out, reduction == 1 ? 1.0f / float(n) : 1.0f, nullptr, stream);
}

void point_loss_backward(PointLoss kind, const float* grad, const float* input, const float* target, float* dx,
                         index_t n, int reduction, Stream stream) {
  FL_CHECK(reduction >= 0 && reduction <= 2, "loss: bad reduction code ", reduction);
  if (n == 0) return;
  const float scale = reduction == 1 ? 1.0f / float(n) : 1.0f;
  point_grad_kernel<<<blocks_for(n, 256), 256, 0, static_cast<cudaStream_t>(stream)>>>(kind, grad, input, target, dx,
                                                                                        n, reduction != 0, scale);
  check_launch("point_grad_kernel");
}

void cross_entropy_forward(const float* logits, const int64_t* target, float* out, float* elem, const float* count,
                           index_t n, index_t c, index_t d, int reduction, float smoothing, int64_t ignore_index,
                           Stream stream) {
  FL_CHECK(reduction >= 0 && reduction <= 2, "cross_entropy: bad reduction code ", reduction);
  const auto s = static_cast<cudaStream_t>(stream);
  float* dst = reduction == 0 ? out : elem;
  const CeArgs a{n, c, d, smoothing, ignore_index};
  if (n * d > 0) {
    if (d == 1) {
      ce_fwd_rows_kernel<<<blocks_for(n, 8), 256, 0, s>>>(logits, target, dst, a);
      check_launch("ce_fwd_rows_kernel");
    } else {
      ce_fwd_cols_kernel<<<blocks_for(n * d, 256), 256, 0, s>>>(logits, target, dst, a);
      check_launch("ce_fwd_cols_kernel");
    }
  }
  if (reduction != 0) sum_reduce(elem, n * d, out, 1.0f, reduction == 1 ? count : nullptr, stream);
}

void cross_entropy_backward(const float* grad, const float* logits, const int64_t* target, const float* count,
                            float* dx, index_t n, index_t c, index_t d, int reduction, float smoothing,
                            int64_t ignore_index, Stream stream) {
  FL_CHECK(reduction >= 0 && reduction <= 2, "cross_entropy: bad reduction code ", reduction);
  if (n * d * c == 0) return;
  const auto s = static_cast<cudaStream_t>(stream);
  const CeArgs a{n, c, d, smoothing, ignore_index};
  if (d == 1) {
    ce_bwd_rows_kernel<<<blocks_for(n, 8), 256, 0, s>>>(grad, logits, target, count, dx, a, reduction);
    check_launch("ce_bwd_rows_kernel");
  } else {
    ce_bwd_cols_kernel<<<blocks_for(n * d, 256), 256, 0, s>>>(grad, logits, target, count, dx, a, reduction);
    check_launch("ce_bwd_cols_kernel");
  }
}

}  // namespace cuda
}  // namespace fl
