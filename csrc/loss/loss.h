// Loss functions, forward and backward (CPU). Arrays are C-contiguous float32 (targets of
// cross_entropy: int64).
#pragma once

#include <cstdint>

#include "core/common.h"

namespace fl {

enum class PointwiseLoss : int { mse = 0, bce = 1, bce_with_logits = 2 };

// Per-element loss of input x against target t (n elements each): writes it to out when out is
// not null and returns the sum (accumulated in double). bce throws ValueError for an input
// outside [0, 1].
double pointwise_loss_forward(PointwiseLoss kind, const float* x, const float* t, float* out, index_t n);
// gx[i] = (g ? g[i] : gscale) * d loss_i / d x[i].
void pointwise_loss_backward(PointwiseLoss kind, const float* x, const float* t, const float* g, float gscale,
                             float* gx, index_t n);

struct CrossEntropyParams {
  const float* logits = nullptr;   // (N, C, S): class axis C, S = prod(d...) (1 for (N, C))
  const int64_t* target = nullptr; // (N, S)
  index_t n = 0, c = 0, s = 1;
  float label_smoothing = 0.0f;
  int64_t ignore_index = -100;
};
struct CrossEntropySum {
  double total = 0.0;  // sum of the per-position losses
  index_t count = 0;   // positions whose target is not ignore_index
};
// Validates the targets (ValueError naming the first bad one), writes the per-position losses
// to out (N, S) when not null (0 at ignored positions) and returns their sum and count.
CrossEntropySum cross_entropy_forward(const CrossEntropyParams& p, float* out);
// grad (N, C, S): (g ? g[i] : gscale) * d loss_i / d logits at each position i; 0 where ignored.
void cross_entropy_backward(const CrossEntropyParams& p, const float* g, float gscale, float* grad);

// The cross-entropy inner loops, one table per ISA (loss_rows_impl.h compiled per ISA).
struct LossRowKernels {
  // One row of c logits: log-sum-exp; *sum_z = sum of the logits.
  float (*row_lse)(const float* z, index_t c, double* sum_z);
  // gz[j] = a * (exp(z[j] - lse) - smooth / c), then gz[t] -= a * (1 - smooth).
  void (*row_grad)(const float* z, index_t c, float lse, float a, int64_t t, float smooth, float* gz);
  // `len` positions of an (C, S) plane starting at z (element (k, j) at z[k * s + j]):
  // lse[j] and sum_z[j] for j < len. work: 2 * len floats.
  void (*plane_lse)(const float* z, index_t c, index_t s, index_t len, float* lse, float* sum_z);
  // The plane form of row_grad: a[j] = 0 for an ignored position (its column is zeroed).
  void (*plane_grad)(const float* z, index_t c, index_t s, index_t len, const float* lse, const float* a,
                     const int64_t* t, float smooth, float* gz);
};
const LossRowKernels& loss_row_kernels();
LossRowKernels loss_rows_generic();
LossRowKernels loss_rows_avx2();
LossRowKernels loss_rows_avx512();

}  // namespace fl
