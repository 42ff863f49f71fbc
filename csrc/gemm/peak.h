// The machine's FMA peak, measured: a register-only loop of independent FMAs (no memory
// traffic), the ceiling every GFLOP/s figure in bench/ is compared against.
#pragma once

#include "core/common.h"

namespace fl {

// Single-precision GFLOP/s of `threads` threads running FMAs of the active ISA's width.
double measure_fma_peak_gflops(int threads);

// Per-ISA loops: `iters` rounds of 12 independent FMAs per lane; return a value that
// depends on the result so the loop is not optimised away.
float fma_loop_avx2(index_t iters);
float fma_loop_avx512(index_t iters);

}  // namespace fl
