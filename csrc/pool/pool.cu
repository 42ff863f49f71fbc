// Pooling and nearest upsampling on the GPU (NCHW), PyTorch's semantics:
//   max_pool2d: padding counts as -inf; NaN wins (PyTorch's `val > max || isnan(val)`);
//     indices are flat offsets h * W + w within the (n, c) plane.
//   avg_pool2d: window clipped to [0, H + pad) for the count_include_pad divisor and to
//     [0, H) for the values (PyTorch's avg_pool2d_out_cuda_frame).
//   adaptive: window [floor(o H / OH), ceil((o + 1) H / OH)).
// Forward kernels: one thread per output element, consecutive threads on consecutive
// outputs (coalesced stores; the window reads of neighbouring threads overlap in L1).
// Backward: avg and upsample gather over the outputs that saw each input (deterministic, no
// atomics); max and adaptive scatter-add through atomics into a zeroed dx (windows may
// overlap, and an index says where to add but not who else adds there).
#include <cstdint>

#include "core/cuda_check.cuh"
#include "pool/pool_cuda.h"

namespace fl {
namespace cuda {
namespace {

#define FL_GRID_LOOP(e, total) \
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < (total); e += int64_t(gridDim.x) * blockDim.x)

// (plane, position within the plane): planes over gridDim.y, positions over gridDim.x, so the
// per-element index arithmetic is one 32-bit division (plane sizes are checked < 2^31, so q plus
// the grid stride stays below 2^32) rather than three 64-bit ones, which would cost more than
// the memory traffic they index.
#define FL_PLANE_LOOP(plane, q, planes, plane_size)                                                  \
  for (int64_t plane = blockIdx.y; plane < (planes); plane += gridDim.y)                           \
    for (unsigned q = blockIdx.x * blockDim.x + threadIdx.x; q < unsigned(plane_size); q += gridDim.x * blockDim.x)

__global__ void max_pool_fwd_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t* __restrict__ idx,
                                    Pool2d p) {
  const unsigned out_w = unsigned(p.ow);
  FL_PLANE_LOOP(plane, q, p.n * p.c, p.oh * p.ow) {
    const int64_t oh = q / out_w, ow = q - oh * out_w;
    const int64_t e = plane * p.oh * p.ow + q;
    const float* xp = x + plane * p.h * p.w;
    const int64_t h0 = oh * p.sh - p.ph, w0 = ow * p.sw - p.pw;
    float best = -INFINITY;
    int64_t arg = -1;
    // Only the taps inside the plane, in window order (ties keep the first maximum): the
    // loops start at the first in-bounds tap and stop at the edge, whatever the kernel size.
    const int i0 = h0 >= 0 ? 0 : int(min(int64_t(p.kh), (-h0 + p.dh - 1) / p.dh));
    const int j0 = w0 >= 0 ? 0 : int(min(int64_t(p.kw), (-w0 + p.dw - 1) / p.dw));
    for (int i = i0; i < p.kh; ++i) {
      const int64_t ih = h0 + int64_t(i) * p.dh;
      if (ih >= p.h) break;
      for (int j = j0; j < p.kw; ++j) {
        const int64_t iw = w0 + int64_t(j) * p.dw;
        if (iw >= p.w) break;
        const float v = xp[ih * p.w + iw];
        if (arg < 0 || v > best || isnan(v)) {
          best = v;
          arg = ih * p.w + iw;
        }
      }
    }
    y[e] = best;  // a window of padding alone (excluded by the caller's checks) gives -inf
    if (idx) idx[e] = arg < 0 ? 0 : arg;
  }
}

// dx must be zeroed. Indices outside the plane are skipped (never written out of bounds).
__global__ void index_scatter_kernel(const float* __restrict__ g, const int64_t* __restrict__ idx,
                                     float* __restrict__ dx, int64_t planes, int64_t out_plane, int64_t in_plane) {
  const int64_t total = planes * out_plane;
  FL_GRID_LOOP(e, total) {
    const int64_t plane = e / out_plane;
    const int64_t q = idx[e];
    if (q >= 0 && q < in_plane) atomicAdd(dx + plane * in_plane + q, g[e]);
  }
}

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// The divisor of output (oh, ow), and its clipped window [hs, he) x [ws, we).
__device__ __forceinline__ float avg_window(const Pool2d& p, int64_t oh, int64_t ow, bool include_pad, int64_t& hs,
                                            int64_t& he, int64_t& ws, int64_t& we) {
  hs = oh * p.sh - p.ph;
  ws = ow * p.sw - p.pw;
  he = min64(hs + p.kh, p.h + p.ph);
  we = min64(ws + p.kw, p.w + p.pw);
  const int64_t pool_size = (he - hs) * (we - ws);
  hs = max64(hs, 0);
  ws = max64(ws, 0);
  he = min64(he, p.h);
  we = min64(we, p.w);
  return float(include_pad ? pool_size : (he - hs) * (we - ws));
}

__global__ void avg_pool_fwd_kernel(const float* __restrict__ x, float* __restrict__ y, Pool2d p, bool include_pad) {
  const unsigned out_w = unsigned(p.ow);
  FL_PLANE_LOOP(plane, q, p.n * p.c, p.oh * p.ow) {
    const int64_t oh = q / out_w, ow = q - oh * out_w;
    const int64_t e = plane * p.oh * p.ow + q;
    const float* xp = x + plane * p.h * p.w;
    int64_t hs, he, ws, we;
    const float div = avg_window(p, oh, ow, include_pad, hs, he, ws, we);
    if (hs >= he || ws >= we) {
      y[e] = 0.0f;
      continue;
    }
    float acc = 0.0f;
    for (int64_t ih = hs; ih < he; ++ih)
      for (int64_t iw = ws; iw < we; ++iw) acc += xp[ih * p.w + iw];
    y[e] = acc / div;
  }
}

__global__ void avg_pool_bwd_kernel(const float* __restrict__ g, float* __restrict__ dx, Pool2d p, bool include_pad) {
  const unsigned in_w = unsigned(p.w);
  FL_PLANE_LOOP(plane, q, p.n * p.c, p.h * p.w) {
    const int64_t ih = q / in_w, iw = q - ih * in_w;
    const int64_t e = plane * p.h * p.w + q;
    const float* gp = g + plane * p.oh * p.ow;
    // Outputs whose window [o*s - pad, o*s - pad + k) contains this input.
    const int64_t hp = ih + p.ph, wp = iw + p.pw;
    const int64_t oh0 = hp < p.kh ? 0 : (hp - p.kh) / p.sh + 1;
    const int64_t oh1 = min64(hp / p.sh + 1, p.oh);
    const int64_t ow0 = wp < p.kw ? 0 : (wp - p.kw) / p.sw + 1;
    const int64_t ow1 = min64(wp / p.sw + 1, p.ow);
    float acc = 0.0f;
    for (int64_t oh = oh0; oh < oh1; ++oh)
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        int64_t hs, he, ws, we;
        const float div = avg_window(p, oh, ow, include_pad, hs, he, ws, we);
        // (an input inside the clipped window of (oh, ow) always gives a non-empty window)
        acc += gp[oh * p.ow + ow] / div;
      }
    dx[e] = acc;
  }
}

__device__ __forceinline__ int64_t ad_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
__device__ __forceinline__ int64_t ad_end(int64_t o, int64_t in, int64_t out) {
  return ((o + 1) * in + out - 1) / out;
}

__global__ void adaptive_avg_fwd_kernel(const float* __restrict__ x, float* __restrict__ y, Pool2d p) {
  const unsigned out_w = unsigned(p.ow);
  FL_PLANE_LOOP(plane, q, p.n * p.c, p.oh * p.ow) {
    const int64_t oh = q / out_w, ow = q - oh * out_w;
    const int64_t e = plane * p.oh * p.ow + q;
    const float* xp = x + plane * p.h * p.w;
    const int64_t hs = ad_start(oh, p.h, p.oh), he = ad_end(oh, p.h, p.oh);
    const int64_t ws = ad_start(ow, p.w, p.ow), we = ad_end(ow, p.w, p.ow);
    float acc = 0.0f;
    for (int64_t ih = hs; ih < he; ++ih)
      for (int64_t iw = ws; iw < we; ++iw) acc += xp[ih * p.w + iw];
    y[e] = acc / float((he - hs) * (we - ws));
  }
}

// dx must be zeroed: adaptive windows overlap when H is not a multiple of OH.
__global__ void adaptive_avg_bwd_kernel(const float* __restrict__ g, float* __restrict__ dx, Pool2d p) {
  const unsigned out_w = unsigned(p.ow);
  FL_PLANE_LOOP(plane, q, p.n * p.c, p.oh * p.ow) {
    const int64_t oh = q / out_w, ow = q - oh * out_w;
    const int64_t e = plane * p.oh * p.ow + q;
    float* dp = dx + plane * p.h * p.w;
    const int64_t hs = ad_start(oh, p.h, p.oh), he = ad_end(oh, p.h, p.oh);
    const int64_t ws = ad_start(ow, p.w, p.ow), we = ad_end(ow, p.w, p.ow);
    const float v = g[e] / float((he - hs) * (we - ws));
    for (int64_t ih = hs; ih < he; ++ih)
      for (int64_t iw = ws; iw < we; ++iw) atomicAdd(dp + ih * p.w + iw, v);
  }
}

__global__ void adaptive_max_fwd_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t* __restrict__ idx,
                                        Pool2d p) {
  const unsigned out_w = unsigned(p.ow);
  FL_PLANE_LOOP(plane, q, p.n * p.c, p.oh * p.ow) {
    const int64_t oh = q / out_w, ow = q - oh * out_w;
    const int64_t e = plane * p.oh * p.ow + q;
    const float* xp = x + plane * p.h * p.w;
    const int64_t hs = ad_start(oh, p.h, p.oh), he = ad_end(oh, p.h, p.oh);
    const int64_t ws = ad_start(ow, p.w, p.ow), we = ad_end(ow, p.w, p.ow);
    float best = -INFINITY;
    int64_t arg = -1;
    for (int64_t ih = hs; ih < he; ++ih)
      for (int64_t iw = ws; iw < we; ++iw) {
        const float v = xp[ih * p.w + iw];
        if (arg < 0 || v > best || isnan(v)) {
          best = v;
          arg = ih * p.w + iw;
        }
      }
    y[e] = best;
    if (idx) idx[e] = arg < 0 ? 0 : arg;
  }
}

__global__ void upsample_fwd_kernel(const float* __restrict__ x, float* __restrict__ y, Pool2d p) {
  const unsigned out_w = unsigned(p.ow);
  FL_PLANE_LOOP(plane, q, p.n * p.c, p.oh * p.ow) {
    const int64_t oh = q / out_w, ow = q - oh * out_w;
    const int64_t e = plane * p.oh * p.ow + q;
    y[e] = x[(plane * p.h + oh / p.sh) * p.w + ow / p.sw];
  }
}

__global__ void upsample_bwd_kernel(const float* __restrict__ g, float* __restrict__ dx, Pool2d p) {
  const unsigned in_w = unsigned(p.w);
  FL_PLANE_LOOP(plane, q, p.n * p.c, p.h * p.w) {
    const int64_t ih = q / in_w, iw = q - ih * in_w;
    const int64_t e = plane * p.h * p.w + q;
    const float* gp = g + plane * p.oh * p.ow + (ih * p.sh) * p.ow + iw * p.sw;
    float acc = 0.0f;
    for (int i = 0; i < p.sh; ++i)
      for (int j = 0; j < p.sw; ++j) acc += gp[int64_t(i) * p.ow + j];
    dx[e] = acc;
  }
}

dim3 plane_grid(int64_t planes, int64_t plane_size) {
  const int64_t bx = (plane_size + 255) / 256;
  return dim3(unsigned(bx < 1 ? 1 : (bx > 65535 ? 65535 : bx)),
              unsigned(planes < 1 ? 1 : (planes > 65535 ? 65535 : planes)));
}

void check_plane(const Pool2d& p, const char* op) {
  FL_CHECK(p.h * p.w < (int64_t(1) << 31) && p.oh * p.ow < (int64_t(1) << 31), op, ": a ", p.h, "x", p.w,
           " plane is more than 2^31 elements");
}

void check_shape(const Pool2d& p, const char* op) {
  check_plane(p, op);
  FL_CHECK(p.n >= 0 && p.c >= 0 && p.h >= 0 && p.w >= 0 && p.oh >= 0 && p.ow >= 0, op, ": negative size");
  FL_CHECK(p.kh >= 1 && p.kw >= 1 && p.sh >= 1 && p.sw >= 1 && p.dh >= 1 && p.dw >= 1 && p.ph >= 0 && p.pw >= 0, op,
           ": bad window parameters");
}

}  // namespace

void max_pool2d_forward(const float* x, float* y, int64_t* indices, const Pool2d& p, Stream stream) {
  check_shape(p, "max_pool2d");
  const int64_t total = p.n * p.c * p.oh * p.ow;
  if (total == 0) return;
  max_pool_fwd_kernel<<<plane_grid(p.n * p.c, p.oh * p.ow), 256, 0, static_cast<cudaStream_t>(stream)>>>(x, y, indices, p);
  check_launch("max_pool_fwd_kernel");
}

void max_pool2d_backward(const float* grad, const int64_t* indices, float* dx, const Pool2d& p, Stream stream) {
  check_shape(p, "max_pool2d_backward");
  const auto s = static_cast<cudaStream_t>(stream);
  const int64_t in_total = p.n * p.c * p.h * p.w;
  if (in_total == 0) return;
  FL_CUDA_CHECK(cudaMemsetAsync(dx, 0, sizeof(float) * in_total, s));
  const int64_t total = p.n * p.c * p.oh * p.ow;
  if (total == 0) return;
  index_scatter_kernel<<<blocks_for(total, 256), 256, 0, s>>>(grad, indices, dx, p.n * p.c, p.oh * p.ow, p.h * p.w);
  check_launch("index_scatter_kernel");
}

void avg_pool2d_forward(const float* x, float* y, const Pool2d& p, bool count_include_pad, Stream stream) {
  check_shape(p, "avg_pool2d");
  const int64_t total = p.n * p.c * p.oh * p.ow;
  if (total == 0) return;
  avg_pool_fwd_kernel<<<plane_grid(p.n * p.c, p.oh * p.ow), 256, 0, static_cast<cudaStream_t>(stream)>>>(x, y, p,
                                                                                            count_include_pad);
  check_launch("avg_pool_fwd_kernel");
}

void avg_pool2d_backward(const float* grad, float* dx, const Pool2d& p, bool count_include_pad, Stream stream) {
  check_shape(p, "avg_pool2d_backward");
  const int64_t total = p.n * p.c * p.h * p.w;
  if (total == 0) return;
  avg_pool_bwd_kernel<<<plane_grid(p.n * p.c, p.h * p.w), 256, 0, static_cast<cudaStream_t>(stream)>>>(grad, dx, p,
                                                                                            count_include_pad);
  check_launch("avg_pool_bwd_kernel");
}

void adaptive_avg_pool2d_forward(const float* x, float* y, const Pool2d& p, Stream stream) {
  check_plane(p, "adaptive_avg_pool2d");
  FL_CHECK(p.oh * p.ow == 0 || p.n * p.c == 0 || (p.h > 0 && p.w > 0), "adaptive_avg_pool2d: empty input plane");
  const int64_t total = p.n * p.c * p.oh * p.ow;
  if (total == 0) return;
  adaptive_avg_fwd_kernel<<<plane_grid(p.n * p.c, p.oh * p.ow), 256, 0, static_cast<cudaStream_t>(stream)>>>(x, y, p);
  check_launch("adaptive_avg_fwd_kernel");
}

void adaptive_avg_pool2d_backward(const float* grad, float* dx, const Pool2d& p, Stream stream) {
  check_plane(p, "adaptive_avg_pool2d_backward");
  const auto s = static_cast<cudaStream_t>(stream);
  const int64_t in_total = p.n * p.c * p.h * p.w;
  if (in_total == 0) return;
  FL_CUDA_CHECK(cudaMemsetAsync(dx, 0, sizeof(float) * in_total, s));
  const int64_t total = p.n * p.c * p.oh * p.ow;
  if (total == 0) return;
  adaptive_avg_bwd_kernel<<<plane_grid(p.n * p.c, p.oh * p.ow), 256, 0, s>>>(grad, dx, p);
  check_launch("adaptive_avg_bwd_kernel");
}

void adaptive_max_pool2d_forward(const float* x, float* y, int64_t* indices, const Pool2d& p, Stream stream) {
  check_plane(p, "adaptive_max_pool2d");
  FL_CHECK(p.oh * p.ow == 0 || p.n * p.c == 0 || (p.h > 0 && p.w > 0), "adaptive_max_pool2d: empty input plane");
  const int64_t total = p.n * p.c * p.oh * p.ow;
  if (total == 0) return;
  adaptive_max_fwd_kernel<<<plane_grid(p.n * p.c, p.oh * p.ow), 256, 0, static_cast<cudaStream_t>(stream)>>>(x, y, indices, p);
  check_launch("adaptive_max_fwd_kernel");
}

void upsample_nearest2d_forward(const float* x, float* y, const Pool2d& p, Stream stream) {
  check_plane(p, "upsample_nearest2d");
  FL_CHECK(p.sh >= 1 && p.sw >= 1 && p.oh == p.h * p.sh && p.ow == p.w * p.sw, "upsample_nearest2d: bad sizes");
  const int64_t total = p.n * p.c * p.oh * p.ow;
  if (total == 0) return;
  upsample_fwd_kernel<<<plane_grid(p.n * p.c, p.oh * p.ow), 256, 0, static_cast<cudaStream_t>(stream)>>>(x, y, p);
  check_launch("upsample_fwd_kernel");
}

void upsample_nearest2d_backward(const float* grad, float* dx, const Pool2d& p, Stream stream) {
  check_plane(p, "upsample_nearest2d");
  FL_CHECK(p.sh >= 1 && p.sw >= 1 && p.oh == p.h * p.sh && p.ow == p.w * p.sw, "upsample_nearest2d: bad sizes");
  const int64_t total = p.n * p.c * p.h * p.w;
  if (total == 0) return;
  upsample_bwd_kernel<<<plane_grid(p.n * p.c, p.h * p.w), 256, 0, static_cast<cudaStream_t>(stream)>>>(grad, dx, p);
  check_launch("upsample_bwd_kernel");
}

}  // namespace cuda
}  // namespace fl
