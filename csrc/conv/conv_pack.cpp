// Baseline build of the implicit-im2col packing (see conv_pack_impl.h).
#define FL_PACK_NS pack_generic
#define FL_PACK_NR 8
#include "conv/conv_pack_impl.h"
