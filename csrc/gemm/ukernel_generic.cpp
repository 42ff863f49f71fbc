// Portable micro-kernel (any CPU, baseline flags): a 4 x 8 tile in plain C++ that the
// compiler may vectorise with whatever the baseline ISA offers (SSE2 on x86-64).
#include <cstring>

#include "elementwise/elementwise_isa.h"
#include "gemm/ukernel.h"

namespace fl {
namespace {

constexpr int kMr = 4, kNr = 8;

void ukernel_portable_ex(index_t kc, const float* a, index_t ars, index_t acs, const float* b, index_t ldb,
                         float* c, index_t ldc, float alpha, float beta, int mr, int nr,
                         const TileEpilogue* epi) {
  float acc[kMr][kNr] = {};
  for (index_t p = 0; p < kc; ++p) {
    for (int i = 0; i < mr; ++i) {
      const float ai = a[i * ars + p * acs];
      for (int j = 0; j < kNr; ++j) acc[i][j] += ai * b[j];
    }
    b += ldb;
  }
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      float r = alpha * acc[i][j];
      if (beta != 0.0f) r += beta * c[i * ldc + j];
      c[i * ldc + j] = r;
    }
  if (epi && (epi->row_bias || epi->col_bias || epi->act != Activation::none))
    elementwise_generic().epilogue(c, ldc, mr, nr, epi->row_bias, epi->col_bias, epi->act);
}

void ukernel_portable(index_t kc, const float* a, const float* b, float* c, index_t ldc, float alpha, float beta,
                      int mr, int nr) {
  ukernel_portable_ex(kc, a, 1, kMr, b, kNr, c, ldc, alpha, beta, mr, nr, nullptr);
}

}  // namespace

Ukernel ukernel_generic() {
  Ukernel u{};  // no short tiles, small-M kernels or SIMD packing: the portable loops
  u.fn = &ukernel_portable;
  u.mr = kMr;
  u.nr = kNr;
  u.kc = 256;
  u.mc = 128;
  u.nc = 2048;
  u.name = "generic 4x8";
  for (int i = 0; i < 7; ++i) u.fn_ex[i] = u.fn_ex_strided[i] = &ukernel_portable_ex;
  return u;
}

Ukernel ukernel_for(Isa isa) {
#if defined(FASTLAYERS_X86)
  if (isa == Isa::avx512) return ukernel_avx512();
  if (isa == Isa::avx2) return ukernel_avx2();
#endif
  return ukernel_generic();
}

}  // namespace fl
