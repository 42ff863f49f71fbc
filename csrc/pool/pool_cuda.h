// CUDA pooling and nearest upsampling, forward and backward (host-only declarations; see
// core/cuda_api.h). NCHW contiguous float32; indices are int64 flat offsets within each
// (n, c) plane, as PyTorch.
#pragma once

#include <cstdint>

#include "core/cuda_api.h"

namespace fl {
namespace cuda {

struct Pool2d {
  index_t n = 0, c = 0, h = 0, w = 0, oh = 0, ow = 0;
  int kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
};

// indices may be null.
void max_pool2d_forward(const float* x, float* y, int64_t* indices, const Pool2d& p, Stream stream);
// dx (n, c, h, w) = scatter-add of grad (n, c, oh, ow) at indices (also adaptive_max_pool2d's).
void max_pool2d_backward(const float* grad, const int64_t* indices, float* dx, const Pool2d& p, Stream stream);
void avg_pool2d_forward(const float* x, float* y, const Pool2d& p, bool count_include_pad, Stream stream);
void avg_pool2d_backward(const float* grad, float* dx, const Pool2d& p, bool count_include_pad, Stream stream);
// Adaptive: only n, c, h, w, oh, ow of p are used.
void adaptive_avg_pool2d_forward(const float* x, float* y, const Pool2d& p, Stream stream);
void adaptive_avg_pool2d_backward(const float* grad, float* dx, const Pool2d& p, Stream stream);
void adaptive_max_pool2d_forward(const float* x, float* y, int64_t* indices, const Pool2d& p, Stream stream);
// Nearest upsampling by integer factors (sh, sw): oh = h*sh, ow = w*sw.
void upsample_nearest2d_forward(const float* x, float* y, const Pool2d& p, Stream stream);
void upsample_nearest2d_backward(const float* grad, float* dx, const Pool2d& p, Stream stream);

}  // namespace cuda
}  // namespace fl
