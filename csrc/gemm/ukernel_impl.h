// The register-tile loop shared by the SIMD micro-kernels, written once over a SIMD traits
// type S (elementwise/simd_avx2.h, simd_avx512.h). Included only by the ISA translation
// units (ukernel_avx2.cpp, ukernel_avx512.cpp), each compiled with its own -m flags, so no
// wide instruction leaks into code that runs before the cpuid check.
#pragma once

#include <algorithm>
#include <type_traits>

#include "elementwise/elementwise_simd.h"
#include "gemm/pack_impl.h"
#include "gemm/ukernel.h"

namespace fl {
namespace ukernel_detail {

// alpha * acc (+ beta * C) (+ bias, activation: ACT >= 0) -> C. Edge tiles use masked
// loads/stores, so full and edge tiles round identically and nothing outside mr x nr is touched.
template <class S, int MR, int NV, int ACT>
inline void store_tile(typename S::V (&acc)[MR][NV], float* c, index_t ldc, float alpha, float beta, int mr,
                       int nr, const TileEpilogue* epi) {
  using V = typename S::V;
  constexpr int W = S::W, NR = NV * W;
  const V valpha = S::set1(alpha), vbeta = S::set1(beta);
  const float* rb = ACT >= 0 ? epi->row_bias : nullptr;
  const float* cb = ACT >= 0 ? epi->col_bias : nullptr;
  const bool has_bias = rb || cb;
  const bool full = mr == MR && nr == NR;
  V cbv[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    const int cnt = std::min(W, std::max(0, nr - v * W));
    cbv[v] = cb ? (cnt == W ? S::loadu(cb + v * W) : S::loadn(cb + v * W, cnt)) : S::zero();
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    if (!full && i >= mr) break;
    const V rbv = S::set1(rb ? rb[i] : 0.0f);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* dst = c + i * ldc + v * W;
      const int cnt = full ? W : std::min(W, std::max(0, nr - v * W));
      if (cnt == 0) break;
      V r = S::mul(acc[i][v], valpha);
      if (beta != 0.0f) r = S::fma(cnt == W ? S::loadu(dst) : S::loadn(dst, cnt), vbeta, r);
      if constexpr (ACT >= 0) r = simd::epi_v<S, ACT>(r, S::add(rbv, cbv[v]), has_bias);
      if (cnt == W) {
        S::storeu(dst, r);
      } else {
        S::storen(dst, cnt, r);
      }
    }
  }
}

// The pieces every register-tile kernel here shares. C is read (beta != 0) or written only
// after the k loop: its lines are fetched first so that the store does not wait on L3/DRAM
// (~13% of the tile's time at kc = 256 without it).
template <class S, int NR>
__attribute__((always_inline)) inline void prefetch_c_rows(const float* c, index_t ldc, int mr) {
  for (int i = 0; i < mr; ++i) {
    S::prefetch(c + i * ldc);
    S::prefetch(c + i * ldc + NR - 1);
  }
}

template <class S, int MR, int NV>
__attribute__((always_inline)) inline void zero_tile(typename S::V (&acc)[MR][NV]) {
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = S::zero();
}

// acc += a[0..MR) (broadcast, one per row) x b[0..NR): one k step.
template <class S, int MR, int NV>
__attribute__((always_inline)) inline void fma_step(typename S::V (&acc)[MR][NV], const float* a, const float* b) {
  using V = typename S::V;
  V bv[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) bv[v] = S::loadu(b + v * S::W);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    const V ai = S::bcast(a + i);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = S::fma(ai, bv[v], acc[i][v]);
  }
}

// One instantiation per epilogue (ACT = -1: none), so store_tile is called exactly once
// and the accumulators stay in registers (with a switch over several store_tile calls GCC
// kept acc[][] in memory and stored all 12 vectors every k step: 3x slower).
// AS: the packed A panel's floats per k (the full tile's MR; a shorter tile reads its first
// MR rows of the same layout).
// Aligned to a 64-byte line, so the hot k loop sits at the same offset in every build:
// at the default 16 bytes the kernels' placement moved with unrelated code, and a build whose
// 6 x 16 kernel landed at 16 mod 64 ran 512^3 - 4096^3 1.2-1.5% slower on one Zen 3 core.
template <class S, int MR, int NV, bool PACKED_A, int ACT, int AS = MR>
__attribute__((aligned(64))) void ukernel_ex(index_t kc, const float* a, index_t ars, index_t acs, const float* b, index_t ldb, float* c,
                index_t ldc, float alpha, float beta, int mr, int nr, const TileEpilogue* epi) {
  using V = typename S::V;
  constexpr int W = S::W, NR = NV * W;
  prefetch_c_rows<S, NR>(c, ldc, mr);
  V acc[MR][NV];
  zero_tile<S, MR, NV>(acc);

  if constexpr (PACKED_A) {
#pragma GCC unroll 4
    for (index_t p = 0; p < kc; ++p) {
      S::prefetch(b + 8 * ldb);
      fma_step<S, MR, NV>(acc, a, b);
      a += AS;
      b += ldb;
    }
  } else {
    // A in place: rows past mr repeat row mr-1 (computed, never stored).
    const float* ap[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) ap[i] = a + std::min(i, mr - 1) * ars;
#pragma GCC unroll 2
    for (index_t p = 0; p < kc; ++p) {
      V bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = S::loadu(b + v * W);
      S::prefetch(b + 8 * ldb);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        const V ai = S::bcast(ap[i] + p * acs);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = S::fma(ai, bv[v], acc[i][v]);
      }
      b += ldb;
    }
  }
  store_tile<S, MR, NV, ACT>(acc, c, ldc, alpha, beta, mr, nr, epi);
}

// The packed-A micro-kernel with a side copy (see SideCopy): after k step p, floor((p + 1) *
// count / kc) runs have been copied (a Bresenham walk), so the runs are spread evenly over the
// k loop rather than bunched at its start: m x 4096 x 4096 on one Zen 3 core (harness, CPU
// time), B packed in a pass before each block vs by the kernels, spread / bunched: m = 16
// 9.9 -> 7.7 / 9.2 ms, m = 8 7.2 -> 6.5 / 7.4 ms. Each run's source is prefetched
// kSideCopyAhead floats (2 KiB) ahead (m = 8: 6.4 -> 5.6 ms; 128 floats 6.1, 2048 6.0, 8192 5.8).
constexpr index_t kSideCopyAhead = 512;

template <class S, int MR, int NV, int AS>
__attribute__((aligned(64))) void ukernel_copy(index_t kc, const float* a, const float* b, float* c, index_t ldc, float alpha, float beta, int mr,
                  int nr, const SideCopy& cp) {
  using V = typename S::V;
  constexpr int W = S::W, NR = NV * W;
  prefetch_c_rows<S, NR>(c, ldc, mr);
  V acc[MR][NV];
  zero_tile<S, MR, NV>(acc);
  const float* src = cp.src;
  float* dst = cp.dst;
  index_t q = cp.panel, due = 0;
  const index_t row_jump = cp.src_rs - cp.panels * NR, dst_jump = NR - cp.panels * cp.panel_stride;
  for (index_t p = 0; p < kc; ++p) {
    S::prefetch(b + 8 * NR);
    fma_step<S, MR, NV>(acc, a, b);
    a += AS;
    b += NR;
    due += cp.count;
    while (due >= kc) {
      due -= kc;
      S::prefetch(src + kSideCopyAhead);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) S::storeu(dst + v * W, S::loadu(src + v * W));
      src += NR;
      dst += cp.panel_stride;
      if (++q == cp.panels) {
        q = 0;
        src += row_jump;
        dst += dst_jump;
      }
    }
  }
  store_tile<S, MR, NV, -1>(acc, c, ldc, alpha, beta, mr, nr, nullptr);
}

template <class S, int MR, int NV>
void ukernel(index_t kc, const float* a, const float* b, float* c, index_t ldc, float alpha, float beta, int mr,
             int nr) {
  ukernel_ex<S, MR, NV, true, -1>(kc, a, 1, MR, b, NV * S::W, c, ldc, alpha, beta, mr, nr, nullptr);
}

// GEMV-like shapes (M <= 4 rows): the MR x NR tile would waste most of its FMAs and a packed
// B would be written and read once more for only M rows; here each B row is read once,
// contiguously, and PQ rows of B are folded into the M accumulators per pass.
template <class S, int M>
void small_m(const GemmParams& p, index_t j0, index_t j1) {
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr int PQ = M == 1 ? 8 : (M <= 3 ? 4 : 2);  // M*PQ broadcasts + M accs + 1 B row <= 16 registers
  constexpr index_t JB = 4096 / M / 16 * 16;         // M x JB accumulators: <= 16 KiB of L1
  alignas(64) float acc[M * JB];
  for (index_t jb = j0; jb < j1; jb += JB) {
    const index_t nb = std::min(JB, j1 - jb);
    const index_t nfull = nb / W, tail = nb % W;
    for (index_t t = 0; t < M * JB; t += W) S::store(acc + t, S::zero());
    const float* bcol = p.b + jb;
    index_t q = 0;
    auto step = [&](auto rows_c) {
      constexpr int R = decltype(rows_c)::value;
      V av[M][R];
      const float* br[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        br[r] = bcol + (q + r) * p.b_rs;
#pragma GCC unroll 4
        for (int i = 0; i < M; ++i) av[i][r] = S::set1(p.a[i * p.a_rs + (q + r) * p.a_cs]);
      }
      for (index_t v = 0; v <= nfull; ++v) {
        const index_t off = v * W;
        if (v == nfull && tail == 0) break;
        V ac[M];
#pragma GCC unroll 4
        for (int i = 0; i < M; ++i) ac[i] = S::load(acc + i * JB + off);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const V x = v < nfull ? S::loadu(br[r] + off) : S::loadn(br[r] + off, tail);
#pragma GCC unroll 4
          for (int i = 0; i < M; ++i) ac[i] = S::fma(av[i][r], x, ac[i]);
        }
#pragma GCC unroll 4
        for (int i = 0; i < M; ++i) S::store(acc + i * JB + off, ac[i]);
      }
      q += R;
    };
    while (q + PQ <= p.k) step(std::integral_constant<int, PQ>{});
    while (q < p.k) step(std::integral_constant<int, 1>{});
    // C = alpha acc + beta C, rounded exactly like store_tile, then the epilogue in place
    // (which rounds like the fused epilogue: bias added to the stored value, then act).
    const V valpha = S::set1(p.alpha), vbeta = S::set1(p.beta);
    for (int i = 0; i < M; ++i) {
      float* crow = p.c + i * p.ldc + jb;
      for (index_t off = 0; off < nb; off += W) {
        const index_t cnt = std::min<index_t>(W, nb - off);
        V r = S::mul(S::load(acc + i * JB + off), valpha);
        if (p.beta != 0.0f) r = S::fma(cnt == W ? S::loadu(crow + off) : S::loadn(crow + off, cnt), vbeta, r);
        cnt == W ? S::storeu(crow + off, r) : S::storen(crow + off, cnt, r);
      }
    }
    if (p.row_bias || p.col_bias || p.act != Activation::none)
      simd::epilogue<S>(p.c + jb, p.ldc, M, nb, p.row_bias, p.col_bias ? p.col_bias + jb : nullptr, p.act);
  }
}

// A dot product: 4 vectors of partial sums (one FMA chain would wait on the FMA latency,
// 4 cycles on Zen; 4 chains already saturate the 2 loads per FMA), summed in a fixed order.
template <class S>
float dot(const float* x, const float* y, index_t k) {
  using V = typename S::V;
  constexpr int W = S::W;
  V s0 = S::zero(), s1 = S::zero(), s2 = S::zero(), s3 = S::zero();
  index_t q = 0;
  for (; q + 4 * W <= k; q += 4 * W) {
    s0 = S::fma(S::loadu(x + q), S::loadu(y + q), s0);
    s1 = S::fma(S::loadu(x + q + W), S::loadu(y + q + W), s1);
    s2 = S::fma(S::loadu(x + q + 2 * W), S::loadu(y + q + 2 * W), s2);
    s3 = S::fma(S::loadu(x + q + 3 * W), S::loadu(y + q + 3 * W), s3);
  }
  for (; q + W <= k; q += W) s0 = S::fma(S::loadu(x + q), S::loadu(y + q), s0);
  if (q < k) s1 = S::fma(S::loadn(x + q, k - q), S::loadn(y + q, k - q), s1);
  return S::hsum(S::add(S::add(s0, s1), S::add(s2, s3)));
}

// C = alpha s + beta C for one element, rounded like store_tile (alpha first, then the FMA).
// (A template, like everything in this header: an inline function with external linkage
// compiled in both ISA units could be linked with the AVX-512 copy for the AVX2 kernels.)
template <class S>
inline void store_scalar(float* c, float s, float alpha, float beta) {
  float r = s * alpha;
  if (beta != 0.0f) r = __builtin_fmaf(*c, beta, r);
  *c = r;
}

// n == 1 (see GemvFn): 4 rows at a time share each load of B, 2 vectors of partial sums per row.
template <class S>
void gemv(const GemmParams& p, index_t i0, index_t i1) {
  using V = typename S::V;
  constexpr int W = S::W;
  const index_t k = p.k;
  const float* b = p.b;
  index_t i = i0;
  for (; i + 4 <= i1; i += 4) {
    const float* a[4];
    V s[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      a[r] = p.a + (i + r) * p.a_rs;
      s[r][0] = s[r][1] = S::zero();
    }
    index_t q = 0;
    for (; q + 2 * W <= k; q += 2 * W) {
      const V b0 = S::loadu(b + q), b1 = S::loadu(b + q + W);
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) {
        s[r][0] = S::fma(S::loadu(a[r] + q), b0, s[r][0]);
        s[r][1] = S::fma(S::loadu(a[r] + q + W), b1, s[r][1]);
      }
    }
    for (; q < k; q += W) {
      const index_t cnt = std::min<index_t>(W, k - q);
      const V b0 = S::loadn(b + q, cnt);
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) s[r][0] = S::fma(S::loadn(a[r] + q, cnt), b0, s[r][0]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r)
      store_scalar<S>(p.c + (i + r) * p.ldc, S::hsum(S::add(s[r][0], s[r][1])), p.alpha, p.beta);
  }
  for (; i < i1; ++i) store_scalar<S>(p.c + i * p.ldc, dot<S>(p.a + i * p.a_rs, b, k), p.alpha, p.beta);
}

// The seven epilogue variants (none, then each Activation) of one tile shape.
template <class S, int MR, int NV, bool PACKED_A, int AS>
void fill_ex(UkernelExFn (&f)[7]) {
  f[0] = &ukernel_ex<S, MR, NV, PACKED_A, -1, AS>;
  f[1] = &ukernel_ex<S, MR, NV, PACKED_A, 0, AS>;
  f[2] = &ukernel_ex<S, MR, NV, PACKED_A, 1, AS>;
  f[3] = &ukernel_ex<S, MR, NV, PACKED_A, 2, AS>;
  f[4] = &ukernel_ex<S, MR, NV, PACKED_A, 3, AS>;
  f[5] = &ukernel_ex<S, MR, NV, PACKED_A, 4, AS>;
  f[6] = &ukernel_ex<S, MR, NV, PACKED_A, 5, AS>;
}

template <class S, int MR, int NV>
Ukernel make_ukernel(index_t kc, index_t mc, index_t nc, const char* name) {
  static_assert(MR >= 3, "the short tiles have MR - 2 >= 1 rows");
  Ukernel u{};
  u.fn = &ukernel<S, MR, NV>;
  u.mr = MR;
  u.nr = NV * S::W;
  u.kc = kc;
  u.mc = mc;
  u.nc = nc;
  u.name = name;
  fill_ex<S, MR, NV, true, MR>(u.fn_ex);
  fill_ex<S, MR, NV, false, MR>(u.fn_ex_strided);
  fill_ex<S, MR - 1, NV, true, MR>(u.fn_ex_short[0]);
  fill_ex<S, MR - 2, NV, true, MR>(u.fn_ex_short[1]);
  fill_ex<S, MR - 1, NV, false, MR>(u.fn_ex_strided_short[0]);
  fill_ex<S, MR - 2, NV, false, MR>(u.fn_ex_strided_short[1]);
  u.fn_copy[0] = &ukernel_copy<S, MR, NV, MR>;
  u.fn_copy[1] = &ukernel_copy<S, MR - 1, NV, MR>;
  u.fn_copy[2] = &ukernel_copy<S, MR - 2, NV, MR>;
  u.small_m[0] = &small_m<S, 1>;
  u.small_m[1] = &small_m<S, 2>;
  u.small_m[2] = &small_m<S, 3>;
  u.small_m[3] = &small_m<S, 4>;
  u.gemv = &gemv<S>;
  u.dot = &dot<S>;
  u.pack_a = &pack_detail::pack_a<MR>;
  u.pack_b = &pack_detail::pack_b_panel<NV * S::W>;
  u.pack_b_rows = &pack_detail::pack_b_rows<NV * S::W>;
  return u;
}

}  // namespace ukernel_detail
}  // namespace fl
