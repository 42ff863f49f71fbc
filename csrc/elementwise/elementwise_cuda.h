// CUDA launchers for the elementwise activations (host-only declarations; see core/cuda_api.h).
#pragma once

#include "core/cuda_api.h"
#include "elementwise/elementwise.h"

namespace fl {
namespace cuda {

void unary_forward(UnaryOp op, const float* x, float* y, index_t n, float slope, Stream stream);
void unary_backward(UnaryOp op, const float* grad, const float* x, const float* y, float* dx,
                    index_t n, float slope, Stream stream);

}  // namespace cuda
}  // namespace fl
