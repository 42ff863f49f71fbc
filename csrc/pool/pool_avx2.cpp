// The pooling plane kernels compiled for AVX2 (8 output columns per vector); see pool_impl.h.
#if defined(FASTLAYERS_X86)
#define FL_POOL_NS pool_avx2
#include "pool/pool_impl.h"
#endif
