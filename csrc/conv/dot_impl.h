// The body of dot_panel (see dot.h), included once per ISA with FL_DOT_NS set: 8-float GCC
// vectors (one ymm under -mavx2 / the AVX-512 build, two xmm in the baseline build).
#include "conv/dot.h"

#ifndef FL_DOT_NS
#error "define FL_DOT_NS before including dot_impl.h"
#endif

#include "conv/vec8.h"

namespace fl {
namespace FL_DOT_NS {

using namespace conv_vec8;

void dot_panel(index_t kc, const float* a, index_t lda, int mr, const float* bt, index_t ldb, int nj, float* c,
               index_t ldc, float beta, const float* bias) {
  constexpr int R = 6, J = 2;  // 12 accumulators + 2 column vectors + 1 weight vector
  const index_t kv = kc / 8 * 8;
  for (int i0 = 0; i0 < mr; i0 += R) {
    const float* ap[R];
    for (int i = 0; i < R; ++i) ap[i] = a + (i0 + i < mr ? i0 + i : mr - 1) * lda;  // clamped rows: not stored
    for (int j0 = 0; j0 < nj; j0 += J) {
      const float* b0 = bt + j0 * ldb;
      const float* b1 = bt + (j0 + 1 < nj ? j0 + 1 : nj - 1) * ldb;
      v8 acc[R][J];
      for (int i = 0; i < R; ++i) acc[i][0] = acc[i][1] = v8{};
      for (index_t p = 0; p < kv; p += 8) {
        const v8 x0 = loadu8(b0 + p), x1 = loadu8(b1 + p);
#pragma GCC unroll 6
        for (int i = 0; i < R; ++i) {
          const v8 av = loadu8(ap[i] + p);
          acc[i][0] += av * x0;
          acc[i][1] += av * x1;
        }
      }
      float s[R][J];
      for (int i = 0; i < R; ++i) {
        s[i][0] = hsum8(acc[i][0]);
        s[i][1] = hsum8(acc[i][1]);
        for (index_t p = kv; p < kc; ++p) {
          s[i][0] += ap[i][p] * b0[p];
          s[i][1] += ap[i][p] * b1[p];
        }
      }
      for (int i = 0; i < R && i0 + i < mr; ++i)
        for (int j = 0; j < J && j0 + j < nj; ++j) {
          float* dst = c + (i0 + i) * ldc + j0 + j;
          float v = s[i][j];
          if (beta != 0.0f) v += beta * *dst;
          if (bias) v += bias[i0 + i];
          *dst = v;
        }
    }
  }
}

}  // namespace FL_DOT_NS
}  // namespace fl
