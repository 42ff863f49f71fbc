// AVX2 + FMA build of the narrow-panel dot products (see dot.h).
#if defined(FASTLAYERS_X86)
#define FL_DOT_NS dot_avx2
#include "conv/dot_impl.h"
#endif
