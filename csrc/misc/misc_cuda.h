// CUDA dropout and embedding (host-only declarations; see core/cuda_api.h).
#pragma once

#include <cstdint>

#include "core/cuda_api.h"

namespace fl {
namespace cuda {

// Element i is kept when hash(seed, i) >= p (a counter-based hash: the mask depends only on
// seed and i, not on the launch). y = keep ? x / (1 - p) : 0; mask[i] = keep (0/1 bytes).
void dropout_forward(const float* x, float* y, uint8_t* mask, index_t n, float p, uint64_t seed, Stream stream);
// dx = mask ? grad * scale : 0
void dropout_backward(const float* grad, const uint8_t* mask, float* dx, index_t n, float scale, Stream stream);

// y (n_idx, dim) = weight[idx]; indices outside [0, num) give rows of NaN (the caller
// validates them first; this only keeps a bad index from reading out of bounds).
void embedding_forward(const int64_t* idx, const float* weight, float* y, index_t n_idx, index_t num, index_t dim,
                       Stream stream);
// dweight (num, dim) = scatter-add of grad rows at idx (zeroed first; atomics).
void embedding_backward(const float* grad, const int64_t* idx, float* dweight, index_t n_idx, index_t num,
                        index_t dim, Stream stream);

}  // namespace cuda
}  // namespace fl
