// AVX-512 build of the implicit-im2col packing (see conv_pack_impl.h); NR = 32 as the 12x32 kernel.
#if defined(FASTLAYERS_X86)
#define FL_PACK_NS pack_avx512
#define FL_PACK_NR 32
#include "conv/conv_pack_impl.h"
#endif
