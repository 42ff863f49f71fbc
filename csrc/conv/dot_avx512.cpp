// AVX-512 build of the narrow-panel dot products (see dot.h): the same 8-float code as AVX2.
#if defined(FASTLAYERS_X86)
#define FL_DOT_NS dot_avx512
#include "conv/dot_impl.h"
#endif
