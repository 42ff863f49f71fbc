// The per-ISA elementwise kernels behind elementwise.h and the GEMM epilogue: one table of
// serial range kernels per ISA (generic in elementwise_cpu.cpp, AVX2/AVX-512 instantiated
// from elementwise_simd.h in elementwise_avx2.cpp / elementwise_avx512.cpp). Callers split
// the work across threads and pick the table with elementwise_for(active_isa()).
#pragma once

#include "core/common.h"
#include "core/cpu_features.h"
#include "elementwise/elementwise.h"
#include "gemm/gemm.h"

namespace fl {

struct ElementwiseIsa {
  // y[0, n) = op(x); stream: write y with non-temporal stores (outputs far beyond the cache).
  void (*unary)(UnaryOp op, const float* x, float* y, index_t n, float slope, bool stream);
  void (*unary_backward)(UnaryOp op, const float* g, const float* x, const float* y, float* dx, index_t n,
                         float slope);
  // Softmax over `rows` contiguous rows of length len (inner == 1).
  void (*softmax_rows)(const float* x, float* y, index_t rows, index_t len, bool log);
  // Softmax over the len axis (stride inner) of one outer slice, for columns [c0, c1).
  void (*softmax_cols)(const float* x, float* y, index_t len, index_t inner, index_t c0, index_t c1, bool log);
  void (*softmax_backward_rows)(const float* g, const float* y, float* dx, index_t rows, index_t len, bool log);
  void (*softmax_backward_cols)(const float* g, const float* y, float* dx, index_t len, index_t inner, index_t c0,
                                index_t c1, bool log);
  // In place over an m x n block (row stride ldc): c = act(c + (row_bias[i] + col_bias[j])).
  void (*epilogue)(float* c, index_t ldc, index_t m, index_t n, const float* row_bias, const float* col_bias,
                   Activation act);
  const char* name;
};

const ElementwiseIsa& elementwise_generic();
const ElementwiseIsa& elementwise_avx2();    // defined only on x86 builds
const ElementwiseIsa& elementwise_avx512();  // defined only on x86 builds
const ElementwiseIsa& elementwise_for(Isa isa);

}  // namespace fl
