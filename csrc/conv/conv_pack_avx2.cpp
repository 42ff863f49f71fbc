// AVX2 build of the implicit-im2col packing (see conv_pack_impl.h); NR = 16 as the 6x16 kernel.
#if defined(FASTLAYERS_X86)
#define FL_PACK_NS pack_avx2
#define FL_PACK_NR 16
#include "conv/conv_pack_impl.h"
#endif
