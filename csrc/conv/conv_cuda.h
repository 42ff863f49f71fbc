// CUDA convolution (host-only declarations; see core/cuda_api.h). NCHW contiguous float32,
// weights (K, C/groups, R, S). The three passes of conv2d; conv_transpose2d is their adjoint
// (its forward is backward_data with the roles of input and output swapped, exactly as the
// CPU driver, python/fastlayers/functional/_conv.py).
//
// Every pass is an implicit GEMM (nothing im2col'd in memory) on the 128x128x8 float32 tile
// engine of conv.cu, except groups == C with one input channel per group (depthwise), which
// has direct kernels.
#pragma once

#include "core/cuda_api.h"

namespace fl {
namespace cuda {

// Convolution geometry: x (n, c, h, w) * weight (k, c/groups, r, s) -> y (n, k, oh, ow).
struct Conv2d {
  index_t n = 0, c = 0, h = 0, w = 0, k = 0, oh = 0, ow = 0;
  int r = 1, s = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;
};

// y = conv(x, weight) + bias[k] (bias may be null).
void conv2d_forward(const float* x, const float* weight, const float* bias, float* y, const Conv2d& g,
                    Stream stream);
// dx (n, c, h, w) = conv2d's data gradient of dy (n, k, oh, ow) (+ bias[c] when bias is not
// null: conv_transpose2d's forward, whose output channels are this geometry's c).
void conv2d_backward_data(const float* dy, const float* weight, const float* bias, float* dx, const Conv2d& g,
                          Stream stream);
// dweight (k, c/groups, r, s) and dbias (k) (may be null) from dy (n, k, oh, ow) and x.
void conv2d_backward_weight(const float* dy, const float* x, float* dweight, float* dbias, const Conv2d& g,
                            Stream stream);
// out[c] = sum over n and the plane of t (n, c, hw): the bias gradients.
void channel_sum(const float* t, float* out, index_t n, index_t c, index_t hw, Stream stream);

// Which kernel a forward geometry takes (for the tests and the benchmark's labels):
// 0 implicit GEMM, 1 depthwise direct, 2 Winograd F(2x2, 3x3) (opt-in:
// FASTLAYERS_CUDA_CONV_ALGO=winograd, for 3x3 stride-1 undilated ungrouped layers).
int conv2d_path(const Conv2d& g);

}  // namespace cuda
}  // namespace fl
