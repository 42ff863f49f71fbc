// AVX-512 micro-kernel: 12 x 32 tile = 24 zmm accumulators + 2 B vectors + 1 broadcast
// (27 of 32 registers); 24 independent FMAs per k hide the FMA latency on two 512-bit pipes.
// The same template as ukernel_avx2.cpp (ukernel_impl.h), only the traits and tile differ.
#if defined(FASTLAYERS_X86)
#include "elementwise/simd_avx512.h"
#include "gemm/ukernel_impl.h"

namespace fl {

Ukernel ukernel_avx512() {
  return ukernel_detail::make_ukernel<simd::Avx512, 12, 2>(256, 144, 3072, "avx512 12x32");
}

}  // namespace fl
#endif
