// Fused scaled-dot-product attention on the CPU (flash-style), forward and backward.
//   q: (nbh, L, E), k: (nbh/group, S, E), v: (nbh/group, S, Ev), out: (nbh, L, Ev)
// where nbh = batch x query heads and group = Hq / Hk (grouped-query attention: query head
// bh reads kv head bh / group). The L x S score matrix never exists: queries and keys are
// tiled, the softmax is online (running max and sum per query), and the backward recomputes
// the probabilities tile by tile from the forward's log-sum-exp.
#pragma once

#include <cstdint>

#include "core/common.h"

namespace fl {

enum class MaskKind : int { none = 0, boolean = 1, additive = 2 };

// A strided stack of matrices: element (i, r, c) is ptr[off[i] + r * rs + c * cs]. Per-matrix
// offsets (instead of one batch stride) let broadcast views and non-contiguous leading
// dimensions through without a copy.
template <class T>
struct StridedMats {
  const T* ptr = nullptr;
  const index_t* off = nullptr;
  index_t rs = 0, cs = 1;
};

struct AttentionParams {
  index_t nbh = 0;    // batch x query heads
  index_t group = 1;  // query heads per kv head
  index_t L = 0, S = 0, E = 0, Ev = 0;
  StridedMats<float> q, k, v;  // q indexed by bh (nbh offsets), k and v by bh / group
  MaskKind mask_kind = MaskKind::none;
  StridedMats<float> mask_f;         // additive mask, (nbh, L, S) through offsets/strides
  StridedMats<std::uint8_t> mask_b;  // bool mask (numpy bool = 1 byte), True = may attend
  bool causal = false;               // top-left aligned: query i sees keys j <= i
  float scale = 1.0f;
  int num_threads = 0;  // 0: fl::num_threads()

  // forward outputs
  float* out = nullptr;  // (nbh, L, Ev) C-contiguous
  float* lse = nullptr;  // (nbh, L) C-contiguous; optional (nullptr); -inf for empty rows

  // backward inputs (C-contiguous) and outputs (C-contiguous)
  const float* dout = nullptr;    // (nbh, L, Ev)
  const float* o = nullptr;       // (nbh, L, Ev), the forward output
  const float* lse_in = nullptr;  // (nbh, L)
  float* dq = nullptr;            // (nbh, L, E)
  float* dk = nullptr;            // (nbh / group, S, E)
  float* dv = nullptr;            // (nbh / group, S, Ev)
};

void run_attention_forward(const AttentionParams& p);
void run_attention_backward(const AttentionParams& p);

// Per-ISA instantiations of attention_impl.h (the AVX ones exist only on x86 builds).
void attention_forward_generic(const AttentionParams& p);
void attention_backward_generic(const AttentionParams& p);
void attention_forward_avx2(const AttentionParams& p);
void attention_backward_avx2(const AttentionParams& p);
void attention_forward_avx512(const AttentionParams& p);
void attention_backward_avx512(const AttentionParams& p);

}  // namespace fl
