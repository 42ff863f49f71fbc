// The pooling plane kernels compiled for AVX-512 (16 output columns per vector); see pool_impl.h.
#if defined(FASTLAYERS_X86)
#define FL_POOL_NS pool_avx512
#include "pool/pool_impl.h"
#endif
