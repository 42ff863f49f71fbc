// The body of pack_b (see conv_pack.h), included once per ISA with FL_PACK_NS and
// FL_PACK_NR (the micro-kernel width of that ISA, so full panels copy with a fixed trip count).
#include "conv/conv_pack.h"

#if !defined(FL_PACK_NS) || !defined(FL_PACK_NR)
#error "define FL_PACK_NS and FL_PACK_NR before including conv_pack_impl.h"
#endif

namespace fl {
namespace FL_PACK_NS {

void pack_b(const PackArgs& a) {
  const ConvParams& p = *a.p;
  const index_t nr = a.nr;
  const index_t cols_pad = (a.cols + nr - 1) / nr * nr;
  index_t c = 0, i = 0, j = 0;  // tap of row r, advanced without division
  for (index_t pc = 0; pc < a.kc; pc += a.kc_block) {
    const index_t kcb = a.kc - pc < a.kc_block ? a.kc - pc : a.kc_block;
    float* block = a.b_pack + pc * cols_pad;
    for (index_t r = pc; r < pc + kcb; ++r) {
      float* rowbase = block + (r - pc) * nr;
      const index_t off_w = j * p.dw - p.pw, off_h = i * p.dh - p.ph;
      const float* plane = a.x + (a.g * a.cg + c) * a.hw;
      for (index_t s = 0; s < a.nsegs; ++s) {
        const PackSegment& sg = a.segs[s];
        float* d = rowbase + sg.jp * kcb * nr + sg.jj;
        const index_t ih = sg.oh * p.sh + off_h;
        if (ih < 0 || ih >= p.h) {
          for (index_t e = 0; e < sg.len; ++e) d[e] = 0.0f;
          continue;
        }
        const float* row = plane + sg.img * p.c * a.hw + ih * p.w;
        const index_t iw0 = sg.ow0 * p.sw + off_w;
        if (p.sw == 1 && iw0 >= 0 && iw0 + sg.len <= p.w) {
          const float* src = row + iw0;
          if (sg.len == FL_PACK_NR) {
#pragma GCC unroll 4
            for (int e = 0; e < FL_PACK_NR; ++e) d[e] = src[e];
          } else {
            for (index_t e = 0; e < sg.len; ++e) d[e] = src[e];
          }
        } else if (p.sw == 2 && iw0 >= 0 && iw0 + 2 * sg.len - 1 <= p.w) {
          // Stride 2 (ResNet's stem and downsampling convs), whole run inside the row: no
          // bounds test per element, and a fixed trip count the compiler turns into
          // de-interleaving loads.
          const float* src = row + iw0;
          if (sg.len == FL_PACK_NR) {
#pragma GCC unroll 4
            for (int e = 0; e < FL_PACK_NR; ++e) d[e] = src[2 * e];
          } else {
            for (index_t e = 0; e < sg.len; ++e) d[e] = src[2 * e];
          }
        } else {
          for (index_t e = 0; e < sg.len; ++e) {
            const index_t iw = iw0 + e * p.sw;
            d[e] = (iw >= 0 && iw < p.w) ? row[iw] : 0.0f;
          }
        }
      }
      if (a.pad_tail && a.cols < cols_pad) {
        // Columns past cols in the last panel (a division per element here cost ~15% of
        // a batch-1 512x7x7 forward: 15 padding columns x 4608 rows).
        float* d = rowbase + (cols_pad / nr - 1) * kcb * nr;
        for (index_t jj = a.cols - (cols_pad - nr); jj < nr; ++jj) d[jj] = 0.0f;
      }
      if (++j == p.kw) {
        j = 0;
        if (++i == p.kh) {
          i = 0;
          ++c;
        }
      }
    }
  }
}

}  // namespace FL_PACK_NS
}  // namespace fl
