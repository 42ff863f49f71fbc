// CUDA losses, forward and backward (host-only declarations; see core/cuda_api.h).
// reduction: 0 "none", 1 "mean", 2 "sum". Forward: `out` has n elements for "none", else 1;
// `elem` (n floats) is the per-element workspace for "mean"/"sum" (may equal `out` for "none").
// Backward: `grad` has n elements for "none", else 1 (the scalar's gradient).
#pragma once

#include <cstdint>

#include "core/cuda_api.h"

namespace fl {
namespace cuda {

enum class PointLoss : int { mse = 0, bce = 1, bce_logits = 2 };

void point_loss_forward(PointLoss kind, const float* input, const float* target, float* out, float* elem,
                        index_t n, int reduction, Stream stream);
void point_loss_backward(PointLoss kind, const float* grad, const float* input, const float* target, float* dx,
                         index_t n, int reduction, Stream stream);

// cross_entropy over logits (n, c, d) (d = product of the trailing dims, 1 for (n, c)) with
// int64 targets (n, d). count: a device float holding the number of targets != ignore_index
// (the "mean" divisor, computed on the device by the caller). elem: n*d floats of workspace
// ("mean"/"sum") or the output ("none").
void cross_entropy_forward(const float* logits, const int64_t* target, float* out, float* elem,
                           const float* count, index_t n, index_t c, index_t d, int reduction, float smoothing,
                           int64_t ignore_index, Stream stream);
void cross_entropy_backward(const float* grad, const float* logits, const int64_t* target, const float* count,
                            float* dx, index_t n, index_t c, index_t d, int reduction, float smoothing,
                            int64_t ignore_index, Stream stream);

// out[0] = scale * sum(v[0..n)), one deterministic block (float64 partial sums).
void sum_reduce(const float* v, index_t n, float* out, float scale, const float* divisor, Stream stream);

}  // namespace cuda
}  // namespace fl
