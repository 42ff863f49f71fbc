// Dropout and embedding, forward and backward (CPU). Arrays are C-contiguous.
#pragma once

#include <cstdint>

#include "core/common.h"

namespace fl {

// y[i] = keep[i] ? x[i] * scale : 0 with keep[i] drawn with probability keep_prob from a
// counter-based generator: keep[i] depends only on (seed, i), not on the thread count.
// mask (n bytes, 0/1) receives keep.
void dropout_forward(const float* x, float* y, uint8_t* mask, index_t n, double keep_prob, float scale,
                     uint64_t seed);
// gx[i] = mask[i] ? g[i] * scale : 0
void dropout_backward(const float* g, const uint8_t* mask, float* gx, index_t n, float scale);

// out[i, :] = weight[idx[i], :]; weight (V, D), idx (n). Validates every index first
// (ValueError naming the first out of range), so no row outside weight is ever read.
void embedding_forward(const int64_t* idx, index_t n, const float* weight, index_t v, index_t d, float* out);
// grad_weight (V, D) = sum over i of grad_out[i, :] scattered to row idx[i] (zeroed first).
void embedding_backward(const float* grad_out, const int64_t* idx, index_t n, index_t v, index_t d,
                        float* grad_weight);

}  // namespace fl
