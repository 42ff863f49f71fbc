// AVX2 + FMA instantiation of the vectorised elementwise kernels (elementwise_simd.h).
#if defined(FASTLAYERS_X86)
#include "elementwise/elementwise_simd.h"
#include "elementwise/simd_avx2.h"

namespace fl {
const ElementwiseIsa& elementwise_avx2() { return simd::table<simd::Avx2>("avx2"); }
}  // namespace fl
#endif
