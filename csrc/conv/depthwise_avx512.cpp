// The depthwise kernels compiled for AVX-512 (16 columns per vector); see depthwise_impl.h.
#if defined(FASTLAYERS_X86)
#define FL_DW_NS dw_avx512
#include "conv/depthwise_impl.h"
#endif
