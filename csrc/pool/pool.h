// Pooling and nearest upsampling on NCHW float32 planes, forward and backward. Every kernel
// works on `planes` = N*C independent H x W planes and is threaded over them.
#pragma once

#include <cstdint>

#include "core/common.h"

namespace fl {

struct PoolParams {
  index_t planes = 0, h = 0, w = 0, oh = 0, ow = 0;
  index_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
};

// Window tap ranges, shared by the drivers (pool_cpu.cpp) and the per-ISA plane kernels
// (pool_impl.h). Arithmetic, not loops: kernels and padding may be ~2^31 wide, and a loop over
// them would look like a hang. Internal linkage, as every ISA unit compiles its own copy.
namespace {
// The first tap t with start + t * d >= 0 (k when none).
inline index_t first_tap_inside(index_t start, index_t d, index_t k) {
  return start >= 0 ? 0 : (-start + d - 1) / d < k ? (-start + d - 1) / d : k;
}
// Taps j < col_taps(...) can land inside the input (j * d - pad <= in - 1); the rest only
// ever see padding.
inline index_t col_taps(index_t k, index_t d, index_t pad, index_t in) {
  const index_t n = (in - 1 + pad) / d + 1;
  return n < k ? n : k;
}
}  // namespace

// Throws ValueError on inconsistent sizes (the Python layer checks first).
void check_pool_params(const PoolParams& p);

// y = window max, PyTorch's rule (row-major scan, first maximum kept, NaN wins); idx (may be
// null) gets the flat in-plane offset ih*W + iw of each maximum.
void max_pool2d_forward(const PoolParams& p, const float* x, float* y, int64_t* idx);
// gx = scatter-add of gy at idx (each checked to lie in [0, H*W): ValueError otherwise).
void max_pool2d_backward(const PoolParams& p, const float* gy, const int64_t* idx, float* gx);

// count_include_pad: divide by the window clipped to the padded input, else to the input.
void avg_pool2d_forward(const PoolParams& p, bool count_include_pad, const float* x, float* y);
void avg_pool2d_backward(const PoolParams& p, bool count_include_pad, const float* gy, float* gx);

// Adaptive windows [floor(i*H/OH), ceil((i+1)*H/OH)); p.kh.. are unused.
void adaptive_avg_pool2d_forward(const PoolParams& p, const float* x, float* y);
void adaptive_avg_pool2d_backward(const PoolParams& p, const float* gy, float* gx);
void adaptive_max_pool2d_forward(const PoolParams& p, const float* x, float* y, int64_t* idx);

// y[oh, ow] = x[oh / sh, ow / sw] with OH = H*sh, OW = W*sw; the backward sums each block.
void upsample_nearest2d_forward(const PoolParams& p, const float* x, float* y);
void upsample_nearest2d_backward(const PoolParams& p, const float* gy, float* gx);

}  // namespace fl
