// AVX2 + FMA micro-kernel: 6 x 16 tile = 12 ymm accumulators + 2 B vectors + 1 broadcast
// (15 of 16 registers), the Haswell-to-Zen layout that keeps both FMA pipes busy: 12
// independent FMAs per k cover the 4-5 cycle FMA latency on 2 ports.
// Blocking for Zen 3 (L1d 32 KiB, L2 512 KiB, L3 32 MiB): kc = 256 (B micro-panel 16 KiB +
// A micro-panel 6 KiB in L1), mc = 144 (A block 144 KiB, well inside L2 next to the B
// panels streaming through), nc = 3072 (B block 3 MiB, double-buffered, in L3).
#if defined(FASTLAYERS_X86)
#include "elementwise/simd_avx2.h"
#include "gemm/ukernel_impl.h"

namespace fl {

Ukernel ukernel_avx2() { return ukernel_detail::make_ukernel<simd::Avx2, 6, 2>(256, 144, 3072, "avx2 6x16"); }

}  // namespace fl
#endif
