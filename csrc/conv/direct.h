// The direct (no-im2col) micro-kernel of stride-1 convolutions, one per ISA.
//
// The input of one image is copied once into a zero-padded buffer xp (C/groups planes of
// Hp x Wp, + pw floats); output pixels are then numbered on the padded width, f = oh * Wp + ow
// (ow in [0, Wp), the Wp - OW columns past OW computed and discarded), so that tap
// r = (c, i, j) of output f is xp[off[r] + f] with off[r] = c*plane + i*dh*Wp + j*dw: NR
// consecutive outputs of one tap are NR consecutive floats, loaded straight from xp. The
// im2col packing (one gather per tap per output, ~25% of a 64-channel 3x3 forward)
// disappears; the price is (Wp - OW) / Wp wasted columns and one padded copy of the input.
// Rows share their padding (a row's right padding is the next row's left, see
// shared_pad_width in conv_forward.cpp), so "same" 3x3 wastes 1 column of W + 1 (1.8% at
// 56x56, 3.4% at 28x28, 6.7% at 14x14).
//
//   C[i*ldc + t] = sum_{p<kc} a[p*MR + i] * xb[off[p] + t] (+ beta * C), i < mr, t < nr
//
// a: packed weights (the GEMM's A panel layout, zero rows past mr); xb: xp + f0. Loads read
// NR floats per tap even when nr < NR: the caller keeps NR floats of slack after xp.
#pragma once

#include "core/common.h"

namespace fl {

using DirectFn = void (*)(index_t kc, const float* a, const float* xb, const index_t* off, float* c, index_t ldc,
                          float beta, int mr, int nr);

struct DirectKernel {
  DirectFn fn;
  int mr, nr;
};

// Which tile: the 3x3-and-wider convolutions read each tap's NR floats from one padded
// plane; the 1x1 path reads them from kc different input planes (one per channel), where a
// narrower NR keeps a K block's B rows in L1 (under AVX2, 4 x 24 loses 15% there: 256->64 at
// 56x56, 1 thread, 64.7 -> 55.0 GFLOP/s, so that path keeps the 6 x 16 tile).
enum class DirectUse { spatial, pointwise };

DirectKernel direct_kernel_generic(DirectUse use);
DirectKernel direct_kernel_avx2(DirectUse use);    // x86 builds only
DirectKernel direct_kernel_avx512(DirectUse use);  // x86 builds only

}  // namespace fl
