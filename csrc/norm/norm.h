// Batch norm and layer norm, forward and backward (CPU). Arrays are C-contiguous float32.
//   batch norm: x (N, C, S) with S = H*W (S = 1 for (N, C) input); statistics per channel c.
//   layer norm: x (M, D), normalised over the last D values of each row.
#pragma once

#include "core/common.h"

namespace fl {

struct BatchNormParams {
  const float* x = nullptr;   // (N, C, S)
  float* y = nullptr;         // (N, C, S)
  index_t n = 0, c = 0, s = 1;
  const float* weight = nullptr;  // (C) or null (= 1)
  const float* bias = nullptr;    // (C) or null (= 0)
  // Training: the running stats (may be null) are updated in place with the batch mean and
  // the unbiased batch variance. Eval: they are the statistics used (both required).
  float* running_mean = nullptr;
  float* running_var = nullptr;
  float* save_mean = nullptr;    // (C) out: the mean used (batch or running)
  float* save_invstd = nullptr;  // (C) out: 1/sqrt(var + eps) used
  bool training = false;
  float momentum = 0.1f;
  float eps = 1e-5f;
};
void batch_norm_forward(const BatchNormParams& p);

// grad_x (and grad_weight/grad_bias when not null) from grad_out, x and the (mean, invstd)
// used by the forward. training=false: mean/invstd were constants (a per-channel scale).
void batch_norm_backward(const float* grad_out, const float* x, const float* weight, const float* mean,
                         const float* invstd, float* grad_x, float* grad_weight, float* grad_bias,
                         index_t n, index_t c, index_t s, bool training);

// y = (x - mean) * rstd * weight + bias per row; mean/rstd (M) written when not null.
void layer_norm_forward(const float* x, const float* weight, const float* bias, float* y, float* mean,
                        float* rstd, index_t m, index_t d, float eps);
// grad_x, grad_weight, grad_bias (the latter two may be null) from the forward's mean/rstd.
void layer_norm_backward(const float* grad_out, const float* x, const float* weight, const float* mean,
                         const float* rstd, float* grad_x, float* grad_weight, float* grad_bias, index_t m,
                         index_t d);

// Row kernels, one table per ISA (norm_rows_impl.h compiled with each ISA's flags): the
// loops the drivers above spend their time in.
struct NormRowKernels {
  // s1 += sum(x - k), s2 += sum((x - k)^2) over len values (k: a shift against cancellation)
  void (*sums_shift)(const float* x, index_t len, float k, double* s1, double* s2);
  // sg += sum(g), sgx += sum(g * (x - m))
  void (*sums_grad)(const float* g, const float* x, index_t len, float m, double* sg, double* sgx);
  // y = x * a + b
  void (*affine)(const float* x, float* y, index_t len, float a, float b);
  // gx = g * a + (x - m) * b + c
  void (*affine2)(const float* g, const float* x, float* gx, index_t len, float a, float m, float b, float c);
  // Per-channel forms over one (C) row of an (N, C) array: channel j uses element j of each vector.
  void (*sums_shift_vec)(const float* x, const float* k, double* s1, double* s2, index_t c);
  void (*sums_grad_vec)(const float* g, const float* x, const float* m, double* sg, double* sgx, index_t c);
  void (*affine_vec)(const float* x, float* y, const float* a, const float* b, index_t c);
  void (*affine2_vec)(const float* g, const float* x, float* gx, const float* a, const float* m,
                      const float* b, const float* cc, index_t c);
  // One layer-norm row: y, and its mean and rstd.
  void (*ln_forward)(const float* x, const float* w, const float* b, float* y, index_t d, float eps,
                     float* mean, float* rstd);
  // One layer-norm row backward: gx; gw += g * xhat, gb += g when not null.
  void (*ln_backward)(const float* g, const float* x, const float* w, float mean, float rstd, float* gx,
                      double* gw, double* gb, index_t d);
};
const NormRowKernels& norm_row_kernels();  // for fl::active_isa()
NormRowKernels norm_rows_generic();
NormRowKernels norm_rows_avx2();
NormRowKernels norm_rows_avx512();

}  // namespace fl
