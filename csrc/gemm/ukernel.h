// The micro-kernel contract (one MR x NR register tile per ISA; BLIS's split of framework
// and kernel). Everything else in gemm_cpu.cpp is portable and written once.
//
//   C[i*ldc + j] = alpha * sum_{p<kc} a[p*MR + i] * b[p*NR + j] + beta * C[i*ldc + j]
//   for i < mr, j < nr.
//
// - a: packed A micro-panel, kc x MR, column of MR values per p, zero-padded past mr.
// - b: packed B micro-panel, kc x NR, row of NR values per p, zero-padded past nr.
// - mr <= MR, nr <= NR: edge tiles are computed in registers in full and only the valid
//   part is written, so nothing outside C's mr x nr block is touched.
// - beta == 0: C is never read (it may hold NaN/garbage), as BLAS promises.
// - a and b are 64-byte aligned; C has no alignment requirement.
#pragma once

#include "core/common.h"
#include "core/cpu_features.h"

namespace fl {

using UkernelFn = void (*)(index_t kc, const float* a, const float* b, float* c, index_t ldc,
                           float alpha, float beta, int mr, int nr);

struct Ukernel {
  UkernelFn fn;
  int mr, nr;          // register tile
  index_t kc, mc, nc;  // cache blocking: kc x nr B panel in L1, mc x kc A block in L2, kc x nc in L3
  const char* name;
};

Ukernel ukernel_generic();
Ukernel ukernel_avx2();    // defined only on x86 builds
Ukernel ukernel_avx512();  // defined only on x86 builds

// The micro-kernel for an ISA (falls back to generic on non-x86 builds).
Ukernel ukernel_for(Isa isa);

}  // namespace fl
