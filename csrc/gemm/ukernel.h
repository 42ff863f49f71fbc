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
//
// fn_ex generalises fn (fn(...) == fn_ex[0](..., 1, MR, ..., NR, ..., nullptr)):
// - A(i, p) = a[i*ars + p*acs] (packed: ars = 1, acs = MR; or A read in place, any strides);
//   rows i >= mr are never read.
// - B(p, j) = b[p*ldb + j] (packed: ldb = NR; or B read in place when its columns are
//   contiguous); with nr < NR, B must still be readable for NR columns (packed panels are).
// - epi (fn_ex[1 + act] only): the GEMM epilogue applied in registers before the store,
//   C = act(alpha AB + beta C + (row_bias[i] + col_bias[j])), bias pointers offset to the tile.
#pragma once

#include "core/common.h"
#include "core/cpu_features.h"
#include "gemm/gemm.h"

namespace fl {

using UkernelFn = void (*)(index_t kc, const float* a, const float* b, float* c, index_t ldc,
                           float alpha, float beta, int mr, int nr);

struct TileEpilogue {
  const float* row_bias;  // mr values (or null)
  const float* col_bias;  // nr values (or null)
  Activation act;
};

using UkernelExFn = void (*)(index_t kc, const float* a, index_t ars, index_t acs, const float* b, index_t ldb,
                             float* c, index_t ldc, float alpha, float beta, int mr, int nr,
                             const TileEpilogue* epi);

// The side copy of a fused B pack (gemm_cpu.cpp, pack_ahead): while a tile computes, it also
// copies `count` runs of NR floats of the next B block into that block's packed panels, spread
// evenly over its k loop (about one run per few k steps: the loads and stores use ports the FMAs
// leave idle, and B streams from DRAM under the arithmetic). The runs walk the next block row by
// row: run r is the NR floats at src (then src + NR, ...; after `panels` runs, the next row at
// src_rs) to dst (then dst + panel_stride, ...; after `panels` runs, back to the first panel, NR
// floats down); `panel` is the first run's panel index within its row.
struct SideCopy {
  const float* src;
  index_t src_rs;
  float* dst;
  index_t panel_stride;
  index_t panels, panel;
  index_t count;
};

// fn (packed A, ars = 1, acs = MR, ldb = NR) plus the side copy; no epilogue.
using UkernelCopyFn = void (*)(index_t kc, const float* a, const float* b, float* c, index_t ldc, float alpha,
                               float beta, int mr, int nr, const SideCopy& copy);

// C[0:M, j0:j1] of a GEMM with M = p.m <= 4 rows and B's columns contiguous (b_cs == 1),
// the epilogue included: B streamed row by row, each row read once and contiguously.
using SmallMFn = void (*)(const GemmParams& p, index_t j0, index_t j1);

// n == 1 (GEMV) with A's rows and B's column contiguous (a_cs == b_rs == 1): C[i0:i1, 0] =
// alpha A[i0:i1, :] B + beta C, epilogue not included. Each row a dot product over k.
using GemvFn = void (*)(const GemmParams& p, index_t i0, index_t i1);
// sum_{q < k} x[q] y[q] of two contiguous vectors (a SIMD reduction, fixed order).
using DotFn = float (*)(const float* x, const float* y, index_t k);

// Packing into the micro-kernel's layouts (see fn above); pack_a may write up to 8 floats
// past mc rounded up to MR times kc (the buffer has that slack).
using PackAFn = void (*)(const float* a, index_t rs, index_t cs, index_t mc, index_t kc, float* dst);
using PackBFn = void (*)(const float* b, index_t rs, index_t cs, index_t kc, int cols, float* dst);
// `panels` full panels of a B with unit column stride, packed row by row (see pack_impl.h).
using PackBRowsFn = void (*)(const float* b, index_t rs, index_t kc, index_t panels, float* dst);

struct Ukernel {
  UkernelFn fn;
  int mr, nr;          // register tile
  index_t kc, mc, nc;  // cache blocking: kc x nr B panel in L1, mc x kc A block in L2, kc x nc in L3
  const char* name;
  // Index 0: no epilogue (epi ignored); 1 + Activation code: epilogue with that activation.
  UkernelExFn fn_ex[7];          // packed A (ars = 1, acs = MR): the fast path
  UkernelExFn fn_ex_strided[7];  // A read in place at any strides
  // Tiles of MR - 1 and MR - 2 rows ([d - 1][1 + act], d = 1, 2), the same NR and the same
  // packed A layout (MR floats per k, rows past the tile unread): a block of mc rows, mc not a
  // multiple of MR, is dealt as tiles of MR, MR-1 and MR-2 rows instead of padding the last
  // tile (32 rows: 6,6,5,5,5,5 instead of 6,6,6,6,6,6 with 4 rows wasted). Null: none.
  UkernelExFn fn_ex_short[2][7];
  UkernelExFn fn_ex_strided_short[2][7];
  // fn with a side copy (SideCopy): [0] tiles of MR rows (or a ragged mr < MR), [d] of MR - d
  // rows (the fn_ex_short layout). Null: none (no fused B pack for this ISA).
  UkernelCopyFn fn_copy[3];
  SmallMFn small_m[4];           // index M-1; null: none for this ISA
  GemvFn gemv;                   // null: none for this ISA
  DotFn dot;
  PackAFn pack_a;                // null: the portable loops in gemm_cpu.cpp
  PackBFn pack_b;
  PackBRowsFn pack_b_rows;
};

Ukernel ukernel_generic();
Ukernel ukernel_avx2();    // defined only on x86 builds
Ukernel ukernel_avx512();  // defined only on x86 builds

// The micro-kernel for an ISA (falls back to generic on non-x86 builds).
Ukernel ukernel_for(Isa isa);

}  // namespace fl
