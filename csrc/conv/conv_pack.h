// Implicit im2col into the micro-kernel's packed B panels (conv_forward.cpp), compiled per
// ISA (conv_pack.cpp baseline, conv_pack_avx2.cpp, conv_pack_avx512.cpp): the copy loops
// are most of the packing cost, and at 64 channels packing is ~25% of a 3x3 forward with
// baseline (SSE, 4-float) moves, so the AVX2 build copies 8 floats per instruction.
#pragma once

#include "conv/conv.h"

namespace fl {

// A run of output pixels of one output row that lands in one NR-column panel of a tile.
struct PackSegment {
  index_t img, oh, ow0, len, jp, jj;
};

struct PackArgs {
  const ConvParams* p;
  const float* x;
  index_t g, cg, hw, kc, kc_block, nr;
  index_t cols;  // pixels in the tile (panels are zero-padded to a multiple of nr)
  const PackSegment* segs;
  index_t nsegs;
  float* b_pack;  // block pc at pc * round_up(cols, nr), panel jp at jp * kcb * nr
  // Zero the columns [cols, round_up(cols, nr)) of the last panel: set only by the caller
  // that owns the last panel when several threads pack disjoint segment ranges of a tile.
  bool pad_tail = true;
};

namespace pack_generic {
void pack_b(const PackArgs& a);
}
namespace pack_avx2 {
void pack_b(const PackArgs& a);
}
namespace pack_avx512 {
void pack_b(const PackArgs& a);
}

}  // namespace fl
