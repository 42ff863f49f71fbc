// CUDA fused scaled-dot-product attention (host-only declarations; see core/cuda_api.h).
// The semantics are the CPU kernel's (attention/attention.h, reference/attention.py):
//   q: (nbh, L, E), k: (nbh/group, S, E), v: (nbh/group, S, Ev), out: (nbh, L, Ev)
// query head bh reads kv head bh / group (grouped-query attention); masks bool (True = may
// attend) or additive float32, addressed like q/k/v through per-head offsets and row/column
// strides (a broadcast view crosses without a copy); causal is top-left aligned (query i sees
// keys j <= i) and combines with a mask; a query row with nothing to attend to gives zeros and
// lse = -inf, and zero gradients. lse is float32 in every dtype.
//
// Two kernel families (attention_flash.cuh, attention_generic.cu):
//   flash   float16/bfloat16, E == Ev in {32, 64, 96, 128, 256}, rows 16-byte aligned with unit
//           column stride: FlashAttention-2 on tensor cores (mma.sync m16n8k16, float32
//           accumulation), K/V tiles through shared memory with cp.async double buffering.
//   generic any dtype (float32 included), any E, Ev <= 512, any strides: one warp per query
//           (or key) row on CUDA cores, float32 arithmetic. The float32 path, and the fallback
//           for the shapes the flash kernels do not cover.
#pragma once

#include <cstdint>

#include "core/cuda_api.h"

namespace fl {
namespace cuda {

// Element (i, r, c) of a stack of matrices is ptr[off[i] + r * rs + c * cs]; `off` is a
// DEVICE array of int64 element offsets (one per matrix), rs/cs element strides.
struct AttnMats {
  const void* ptr = nullptr;
  const int64_t* off = nullptr;
  int64_t rs = 0, cs = 1;
};

enum class AttnPath : int { generic = 0, flash = 1 };

struct AttentionCudaParams {
  int dtype = 0;  // gemm_cuda.h DType codes: 0 float32, 1 float16, 2 bfloat16 (q, k, v, out, grads)
  AttnPath path = AttnPath::generic;
  int64_t nbh = 0, group = 1, L = 0, S = 0, E = 0, Ev = 0;
  AttnMats q, k, v;
  int mask_kind = 0;  // 0 none, 1 bool (1 byte), 2 additive float32
  AttnMats mask;
  bool causal = false;
  float scale = 1.0f;
  // forward
  void* out = nullptr;   // (nbh, L, Ev) C-contiguous, dtype
  float* lse = nullptr;  // (nbh, L) C-contiguous, optional
  // backward
  const void* dout = nullptr;    // (nbh, L, Ev) C-contiguous, dtype
  const void* o = nullptr;       // (nbh, L, Ev) C-contiguous, dtype (the forward's output)
  const float* lse_in = nullptr;  // (nbh, L)
  void* dq = nullptr;            // (nbh, L, E) C-contiguous, dtype
  void* dk = nullptr;            // (nbh/group, S, E)
  void* dv = nullptr;            // (nbh/group, S, Ev)
  float* workspace = nullptr;    // attention_backward_workspace(p) floats
};

// Largest head dimension of the generic kernels (registers per lane: 16 floats per operand).
constexpr int64_t kAttnGenericMaxHead = 512;

// True when the flash kernels take these sizes/dtype (alignment is the caller's business).
bool attention_flash_supported(int dtype, int64_t E, int64_t Ev);
// float32 elements of backward workspace: delta (nbh * L) and, on the flash path, the dq
// accumulator (nbh * L * E). Linear in L: no L x S buffer anywhere.
int64_t attention_backward_workspace(const AttentionCudaParams& p);

// Throw std::invalid_argument on bad sizes, std::runtime_error naming a failing CUDA call.
void attention_forward(const AttentionCudaParams& p, Stream stream);
void attention_backward(const AttentionCudaParams& p, Stream stream);

}  // namespace cuda
}  // namespace fl
