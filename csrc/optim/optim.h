// Optimizer updates: one fused pass over a parameter's elements (CPU), PyTorch's rules
// (torch.optim single-tensor implementations, maximize=False). All arrays hold n floats,
// C-contiguous; p and the state arrays are updated in place.
#pragma once

#include "core/common.h"

namespace fl {

struct SgdParams {
  float lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  bool first = false;  // momentum buffer not yet initialised: buf = d_p
};
// d = g + wd p; buf = first ? d : momentum buf + (1 - dampening) d; d = nesterov ? d + momentum buf
// : buf (momentum != 0); p -= lr d. buf may be null when momentum == 0.
void sgd_step(float* p, const float* g, float* buf, index_t n, const SgdParams& a);

struct AdamParams {
  float lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
  float step_size = 0;  // lr / (1 - beta1^t), computed in double by the caller
  float bc2_sqrt = 1;   // sqrt(1 - beta2^t)
  bool decoupled = false;  // AdamW: p *= 1 - lr wd instead of g += wd p
};
// m, v (and v_max when amsgrad: not null) updated; p -= step_size m / (sqrt(v or v_max) / bc2_sqrt + eps)
void adam_step(float* p, const float* g, float* m, float* v, float* v_max, index_t n, const AdamParams& a);

struct RmspropParams {
  float lr = 0, alpha = 0, eps = 0, weight_decay = 0, momentum = 0;
};
// sq = alpha sq + (1 - alpha) g^2; centered (grad_avg not null): ga = lerp(ga, g, 1 - alpha),
// avg = sqrt(sq - ga^2) + eps, else sqrt(sq) + eps; momentum (buf not null): buf = momentum buf
// + g / avg, p -= lr buf; else p -= lr g / avg.
void rmsprop_step(float* p, const float* g, float* sq, float* grad_avg, float* buf, index_t n,
                  const RmspropParams& a);

}  // namespace fl
