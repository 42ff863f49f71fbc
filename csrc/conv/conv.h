// 2-D convolution on NCHW float32, forward and backward, and the transposed convolution as
// its adjoint. The geometry is given in full (output size included) so that the transposed
// convolution can reuse the same three passes with the roles of input and output swapped:
//
//   conv_transpose2d forward   = conv2d_backward_data  (x_t plays grad_out)
//   conv_transpose2d grad x    = conv2d_forward        (grad_out_t plays the input)
//   conv_transpose2d grad w    = conv2d_backward_weight(x_t plays grad_out, grad_out_t the input)
//
// x: (N, C, H, W), w: (K, C/groups, R, S), y: (N, K, OH, OW). Padding is the top/left amount;
// the bottom/right amount is implied by OH/OW (so "same" with an odd total works as PyTorch).
// Every tap is bounds-checked against H x W, so OH/OW larger than the padded input allows
// (a transposed conv's output_padding) reads zeros rather than out of bounds.
#pragma once

#include "core/common.h"

namespace fl {

struct ConvParams {
  index_t n = 0, c = 0, h = 0, w = 0;  // input
  index_t k = 0, oh = 0, ow = 0;       // output channels and size
  index_t kh = 1, kw = 1;              // kernel
  index_t sh = 1, sw = 1;              // stride
  index_t ph = 0, pw = 0;              // top / left padding
  index_t dh = 1, dw = 1;              // dilation
  index_t groups = 1;
};

// Throws ValueError when the sizes are inconsistent (last line of defence: Python checks first).
void check_conv_params(const ConvParams& p);

// y = conv(x, w) + bias[k] (bias may be null).
void conv2d_forward(const ConvParams& p, const float* x, const float* w, const float* bias, float* y);

// Whether these sizes are eligible for the direct (no im2col) kernel; conv2d_forward still
// takes the batch-1 GEMM path instead for a single image with OW <= 16.
bool conv2d_forward_is_direct(const ConvParams& p);

// gx = conv^T(gy, w) (+ bias[c] when bias is not null: the transposed convolution's bias).
void conv2d_backward_data(const ConvParams& p, const float* gy, const float* w, const float* bias, float* gx);

// gw = sum over the batch of gy (x) im2col(x); gb[k] = sum of gy over n, oh, ow (either may be null).
void conv2d_backward_weight(const ConvParams& p, const float* gy, const float* x, float* gw, float* gb);

// Depthwise kernels (groups == C, one input channel per group, K = C * multiplier): direct
// loops, compiled per ISA (depthwise_impl.h). Used by the three functions above.
namespace depthwise {
void forward(const ConvParams& p, const float* x, const float* w, const float* bias, float* y);
void backward_data(const ConvParams& p, const float* gy, const float* w, const float* bias, float* gx);
void backward_weight(const ConvParams& p, const float* gy, const float* x, float* gw);
}  // namespace depthwise

}  // namespace fl
