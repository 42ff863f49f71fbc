// Elementwise activations and softmax over an axis, forward and backward (CPU).
// Arrays are contiguous; n counts elements.
#pragma once

#include "core/common.h"

namespace fl {

enum class UnaryOp : int { relu = 0, leaky_relu = 1, sigmoid = 2, tanh = 3, gelu = 4, gelu_tanh = 5 };

// y = op(x)
void unary_forward(UnaryOp op, const float* x, float* y, index_t n, float slope);
// dx = grad * op'(x). y (the forward output) may be null; sigmoid and tanh use it when given.
void unary_backward(UnaryOp op, const float* grad, const float* x, const float* y, float* dx,
                    index_t n, float slope);

// Softmax (or log-softmax) over the middle axis of a contiguous (outer, len, inner) array.
void softmax_forward(const float* x, float* y, index_t outer, index_t len, index_t inner, bool log);
// dx from grad and the forward output y (softmax or log-softmax output).
void softmax_backward(const float* grad, const float* y, float* dx, index_t outer, index_t len,
                      index_t inner, bool log);

}  // namespace fl
