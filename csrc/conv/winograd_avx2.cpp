// AVX2 + FMA build of the Winograd transforms (see winograd_impl.h).
#if defined(FASTLAYERS_X86)
#define FL_WINO_NS avx2
#define FL_WINO_AVX2 1
#include "conv/winograd_impl.h"

namespace fl::winograd {
Transforms transforms_avx2() { return {&avx2::weights, &avx2::input, &avx2::output}; }
}  // namespace fl::winograd
#endif
