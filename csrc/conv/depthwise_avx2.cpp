// The depthwise kernels compiled for AVX2 + FMA (8 columns per vector); see depthwise_impl.h.
#if defined(FASTLAYERS_X86)
#define FL_DW_NS dw_avx2
#include "conv/depthwise_impl.h"
#endif
