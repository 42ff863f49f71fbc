// AVX-512 instantiation of the vectorised elementwise kernels (elementwise_simd.h).
#if defined(FASTLAYERS_X86)
#include "elementwise/elementwise_simd.h"
#include "elementwise/simd_avx512.h"

namespace fl {
const ElementwiseIsa& elementwise_avx512() { return simd::table<simd::Avx512>("avx512"); }
}  // namespace fl
#endif
