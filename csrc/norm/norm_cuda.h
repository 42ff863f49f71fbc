// CUDA layer_norm and batch_norm, forward and backward (host-only declarations; see
// core/cuda_api.h). Contiguous float32 device arrays; weight/bias may be null (1 and 0).
#pragma once

#include "core/cuda_api.h"

namespace fl {
namespace cuda {

// layer_norm over the last `cols` elements of each of `rows` rows. mean/rstd (length rows)
// may be null; when given they receive the row statistics.
void layer_norm_forward(const float* x, const float* weight, const float* bias, float* y, float* mean,
                        float* rstd, index_t rows, index_t cols, float eps, Stream stream);
// dx (rows x cols); dweight/dbias (cols) may be null. stats: 2*rows floats of workspace.
void layer_norm_backward(const float* grad, const float* x, const float* weight, float* dx, float* dweight,
                         float* dbias, float* stats, index_t rows, index_t cols, float eps, Stream stream);

// batch_norm over x viewed as (n, c, hw). Training: batch mean and invstd into mean/invstd
// (length c), and running_mean/running_var (may be null) updated in place with momentum
// (running_var gets the unbiased variance, as PyTorch). Eval: normalises with the running
// statistics; mean/invstd are ignored.
void batch_norm_forward(const float* x, const float* weight, const float* bias, float* y, float* mean,
                        float* invstd, float* running_mean, float* running_var, index_t n, index_t c, index_t hw,
                        bool training, float momentum, float eps, Stream stream);
// mean/invstd: the statistics used by the forward (the batch's in training, the running
// ones, invstd = 1/sqrt(running_var + eps), in eval). sums: 2*c floats, receives
// sum(grad) (= dbias) then sum(grad * xhat) (= dweight).
void batch_norm_backward(const float* grad, const float* x, const float* weight, const float* mean,
                         const float* invstd, float* dx, float* sums, index_t n, index_t c, index_t hw,
                         bool training, Stream stream);

}  // namespace cuda
}  // namespace fl
