// CUDA GEMM (host-only declarations; see core/cuda_api.h):
//   C = act(alpha * op(A) op(B) + beta * C + row_bias[i] + col_bias[j]),  batched.
// Every operand is stored row-major with a leading dimension (elements):
//   A: trans_a ? (k, m) : (m, k), row stride lda;  B: trans_b ? (n, k) : (k, n), row stride ldb;
//   C: (m, n), row stride ldc (in place: read when beta != 0, then written).
// float32 runs on CUDA cores; float16 / bfloat16 on tensor cores with float32 accumulation
// (C, the biases and the result in the inputs' dtype). Any sizes and strides: fast paths
// need 16-byte aligned rows, the rest is predicated.
#pragma once

#include "core/cuda_api.h"

namespace fl {
namespace cuda {

enum class DType : int { f32 = 0, f16 = 1, bf16 = 2 };

struct GemmCudaParams {
  index_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  index_t lda = 0;
  bool trans_a = false;
  const void* b = nullptr;
  index_t ldb = 0;
  bool trans_b = false;
  void* c = nullptr;
  index_t ldc = 0;
  float alpha = 1.0f, beta = 0.0f;  // beta == 0: C is never read
  const void* row_bias = nullptr;   // length m (C's dtype)
  const void* col_bias = nullptr;   // length n (C's dtype)
  int act = 0;                      // fl::Activation code
  DType dtype = DType::f32;
  // Batched: `batch` products, operand i at base + i * stride (0 broadcasts one operand).
  index_t batch = 1, stride_a = 0, stride_b = 0, stride_c = 0;
  // Tensor-core tile configuration: 0 = default (128x128, warp tile 64x32), 1 = 128x256
  // (warp tile 64x64). Exposed for the GPU benchmark (env FASTLAYERS_CUDA_GEMM_CFG).
  int config = -1;  // -1: read the environment once
};

// Throws std::invalid_argument on bad sizes, std::runtime_error naming the failing CUDA call.
void gemm(const GemmCudaParams& p, Stream stream);

}  // namespace cuda
}  // namespace fl
