// CUDA softmax / log-softmax over the middle axis of a contiguous (outer, len, inner) array
// (host-only declarations; see core/cuda_api.h).
#pragma once

#include "core/cuda_api.h"

namespace fl {
namespace cuda {

void softmax_forward(const float* x, float* y, index_t outer, index_t len, index_t inner, bool log,
                     Stream stream);
// dx from grad and the forward output y (softmax or log-softmax output).
void softmax_backward(const float* grad, const float* y, float* dx, index_t outer, index_t len, index_t inner,
                      bool log, Stream stream);

}  // namespace cuda
}  // namespace fl
