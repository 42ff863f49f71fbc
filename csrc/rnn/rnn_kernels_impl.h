// The recurrent step kernels, written once over a SIMD traits type S (vector type V, lane
// count W, loads/stores with a lane count for the hidden-size tail, fma, tanh, sigmoid).
// Included only by the ISA translation units (rnn_avx2.cpp, rnn_avx512.cpp, rnn_generic.cpp),
// each compiled with its own -m flags.
//
// A tile is 4 vectors wide (4W columns of the packed weights, see rnn.h). For each tile and
// block of up to kRowBlock rows: the recurrent GEMM accumulates into a small row-block buffer
// (rows x 4W floats, in L1) k-block by k-block, then the pointwise step reads it back once and
// writes h, c (and the gates / gate gradients), so the gate pre-activations never make a trip
// through memory of their own.
#pragma once

#include <algorithm>

#include "rnn/rnn.h"

namespace fl {
namespace rnn_detail {

// tanh: the odd rational approximation [13/6] on [-7.9053, 7.9053] (clamped outside, where
// float32 tanh is +-1 to within 3e-7): max error 3.6e-7 over the whole float line, measured
// against float64 tanh; sigmoid is derived from it. No exp, so no overflow: saturated gates
// stay finite for any input. NaN propagates (the clamps take the input as their second
// operand, which min/max return when it is NaN).
struct TanhCoeffs {
  static constexpr float clamp = 7.90531110763549805f;
  static constexpr float a1 = 4.89352455891786e-03f, a3 = 6.37261928875436e-04f, a5 = 1.48572235717979e-05f,
                         a7 = 5.12229709037114e-08f, a9 = -8.60467152213735e-11f, a11 = 2.00018790482477e-13f,
                         a13 = -2.76076847742355e-16f;
  static constexpr float b0 = 4.89352518554385e-03f, b2 = 2.26843463243900e-03f, b4 = 1.18534705686654e-04f,
                         b6 = 1.19825839466702e-06f;
};

// The shared tanh over any traits type with min/max/mul/fma/div.
template <class S>
inline typename S::V rational_tanh(typename S::V x) {
  using C = TanhCoeffs;
  x = S::max(S::set1(-C::clamp), S::min(S::set1(C::clamp), x));
  const typename S::V x2 = S::mul(x, x);
  typename S::V p = S::fma(x2, S::set1(C::a13), S::set1(C::a11));
  p = S::fma(x2, p, S::set1(C::a9));
  p = S::fma(x2, p, S::set1(C::a7));
  p = S::fma(x2, p, S::set1(C::a5));
  p = S::fma(x2, p, S::set1(C::a3));
  p = S::fma(x2, p, S::set1(C::a1));
  p = S::mul(x, p);
  typename S::V q = S::fma(x2, S::set1(C::b6), S::set1(C::b4));
  q = S::fma(x2, q, S::set1(C::b2));
  q = S::fma(x2, q, S::set1(C::b0));
  return S::div(p, q);
}

// Rows per block: the buffer (kRowBlock x 4W floats) and one k-block of A rows stay in L1.
constexpr index_t kRowBlock = 48;

// K-block so that one panel block (kc x 4W floats) is ~12 KB: it is reused by every row chunk
// of the block and must stay in the 32 KB L1 beside the A rows streaming past it.
template <class S>
constexpr index_t k_block() {
  return 3072 / (4 * S::W);
}

// out[r][v] (+)= sum_{k<kc} a[r*lda + k] * w[k*4W + v*W ...] for RB rows and NV of the tile's 4
// vectors (w and out already offset to the first of them; both have a row stride of 4W).
// RB x NV accumulators + NV weight vectors + 1 broadcast must fit the register file: AVX2
// runs 6 x 2 (15 of 16 ymm), the shape of the GEMM micro-kernel. A 2 x 4 version measured
// ~20% slower here: GCC folds its weight loads into the FMAs, so 10 loads feed 8 FMAs.
template <class S, int RB, int NV>
inline void micro(const float* a, index_t lda, index_t kc, const float* w, float* out, bool accumulate) {
  using V = typename S::V;
  constexpr int W = S::W;
  V acc[RB][NV];
#pragma GCC unroll 8
  for (int r = 0; r < RB; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = accumulate ? S::load(out + r * 4 * W + v * W) : S::zero();
  for (index_t k = 0; k < kc; ++k) {
    const float* wk = w + k * 4 * W;
    V wv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) wv[v] = S::load(wk + v * W);
#pragma GCC unroll 8
    for (int r = 0; r < RB; ++r) {
      const V s = S::set1(a[r * lda + k]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = S::fma(s, wv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < RB; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) S::store(out + r * 4 * W + v * W, acc[r][v]);
}

// rb (< RB) leftover rows: one instantiation per count, so a batch of 32 = 5 x 6 + 2 runs
// its last two rows as one 2-row call, not two latency-bound single rows.
template <class S, int NV>
inline void micro_tail(int rb, const float* a, index_t lda, index_t kc, const float* w, float* out, bool acc) {
  switch (rb) {
    case 1: micro<S, 1, NV>(a, lda, kc, w, out, acc); break;
    case 2: micro<S, 2, NV>(a, lda, kc, w, out, acc); break;
    case 3: micro<S, 3, NV>(a, lda, kc, w, out, acc); break;
    case 4: micro<S, 4, NV>(a, lda, kc, w, out, acc); break;
    case 5: micro<S, 5, NV>(a, lda, kc, w, out, acc); break;
    default: break;
  }
}

// One row (batch 1, a GEMV): two k streams so that 8 independent accumulators cover the FMA
// latency (4 would leave half of the FMA issue slots empty).
template <class S>
inline void micro_row(const float* a, index_t kc, const float* w, float* out, bool accumulate) {
  using V = typename S::V;
  constexpr int W = S::W;
  V acc[2][4];
  for (int v = 0; v < 4; ++v) {
    acc[0][v] = accumulate ? S::load(out + v * W) : S::zero();
    acc[1][v] = S::zero();
  }
  index_t k = 0;
  for (; k + 2 <= kc; k += 2) {
    const float* wk = w + k * 4 * W;
    const V s0 = S::set1(a[k]), s1 = S::set1(a[k + 1]);
    for (int v = 0; v < 4; ++v) {
      acc[0][v] = S::fma(s0, S::load(wk + v * W), acc[0][v]);
      acc[1][v] = S::fma(s1, S::load(wk + 4 * W + v * W), acc[1][v]);
    }
  }
  if (k < kc) {
    const V s0 = S::set1(a[k]);
    for (int v = 0; v < 4; ++v) acc[0][v] = S::fma(s0, S::load(w + k * 4 * W + v * W), acc[0][v]);
  }
  for (int v = 0; v < 4; ++v) S::store(out + v * W, S::add(acc[0][v], acc[1][v]));
}

// buf (rows x 4W) = a (rows x K, row stride lda) @ panel (K x 4W).
template <class S>
void tile_gemm(const float* a, index_t lda, index_t rows, index_t K, const float* panel, float* buf) {
  constexpr int W = S::W, RB = S::kRows, NV = S::kVecs;
  static_assert(RB <= 6 && (NV == 2 || NV == 4), "micro_tail covers up to 5 leftover rows");
  constexpr index_t KC = k_block<S>();
  for (index_t k0 = 0; k0 < K; k0 += KC) {
    const index_t kc = std::min(KC, K - k0);
    const bool acc = k0 > 0;
    const float* w = panel + k0 * 4 * W;
    index_t r = 0;
    if (rows == 1) {
      micro_row<S>(a + k0, kc, w, buf, acc);
      continue;
    }
    for (int v0 = 0; v0 < 4; v0 += NV) {
      for (r = 0; r + RB <= rows; r += RB)
        micro<S, RB, NV>(a + r * lda + k0, lda, kc, w + v0 * W, buf + r * 4 * W + v0 * W, acc);
      if (r < rows)
        micro_tail<S, NV>(static_cast<int>(rows - r), a + r * lda + k0, lda, kc, w + v0 * W,
                          buf + r * 4 * W + v0 * W, acc);
    }
  }
}

template <class S>
inline typename S::V loadn(const float* p, int n) {
  return n == S::W ? S::loadu(p) : S::loadn(p, n);
}
template <class S>
inline void storen(float* p, typename S::V v, int n) {
  if (n == S::W) {
    S::storeu(p, v);
  } else {
    S::storen(p, v, n);
  }
}

template <class S>
inline typename S::V sigmoid(typename S::V x) {
  // sigmoid(x) = (1 + tanh(x/2)) / 2: one rational tanh, no exp, finite for any x.
  const typename S::V half = S::set1(0.5f);
  return S::fma(half, S::tanh(S::mul(half, x)), half);
}

template <class S>
void forward_tiles(const StepForward& s, index_t tb, index_t te, index_t rb, index_t re) {
  using V = typename S::V;
  constexpr int W = S::W;
  const index_t H = s.H, K = H;
  const bool lstm = s.mode == RnnMode::lstm;
  const index_t GH = lstm ? 4 * H : H;
  alignas(64) float buf[kRowBlock * 4 * W];
  const V zero = S::zero();
  for (index_t j = tb; j < te; ++j) {
    const float* panel = s.panels + j * K * 4 * W;
    for (index_t r0 = rb; r0 < re; r0 += kRowBlock) {
      const index_t rows = std::min(kRowBlock, re - r0);
      if (s.hprev) {
        tile_gemm<S>(s.hprev + r0 * s.ld_hprev, s.ld_hprev, rows, K, panel, buf);
      } else {
        std::fill(buf, buf + rows * 4 * W, 0.0f);
      }
      for (index_t i = 0; i < rows; ++i) {
        const index_t r = r0 + i;
        const float* acc = buf + i * 4 * W;
        const float* xp = s.xp + r * GH;
        if (lstm) {
          const index_t u = j * W;
          const int n = static_cast<int>(std::min<index_t>(W, H - u));
          const V zi = S::add(S::load(acc), loadn<S>(xp + u, n));
          const V zf = S::add(S::load(acc + W), loadn<S>(xp + H + u, n));
          const V zg = S::add(S::load(acc + 2 * W), loadn<S>(xp + 2 * H + u, n));
          const V zo = S::add(S::load(acc + 3 * W), loadn<S>(xp + 3 * H + u, n));
          const V ig = sigmoid<S>(zi), fg = sigmoid<S>(zf), gg = S::tanh(zg), og = sigmoid<S>(zo);
          const V cp = s.cprev ? loadn<S>(s.cprev + r * H + u, n) : zero;
          const V c = S::fma(fg, cp, S::mul(ig, gg));
          const V h = S::mul(og, S::tanh(c));
          storen<S>(s.c_out + r * H + u, c, n);
          storen<S>(s.h_out + r * s.ld_h + u, h, n);
          if (s.gates_out) {
            float* g = s.gates_out + r * GH;
            storen<S>(g + u, ig, n);
            storen<S>(g + H + u, fg, n);
            storen<S>(g + 2 * H + u, gg, n);
            storen<S>(g + 3 * H + u, og, n);
          }
        } else {
          for (int v = 0; v < 4; ++v) {
            const index_t u = j * 4 * W + v * W;
            if (u >= H) break;
            const int n = static_cast<int>(std::min<index_t>(W, H - u));
            const V z = S::add(S::load(acc + v * W), loadn<S>(xp + u, n));
            const V h = s.mode == RnnMode::rnn_tanh ? S::tanh(z) : S::relu(z);
            storen<S>(s.h_out + r * s.ld_h + u, h, n);
          }
        }
      }
    }
  }
}

template <class S>
void backward_tiles(const StepBackward& s, index_t tb, index_t te, index_t rb, index_t re) {
  using V = typename S::V;
  constexpr int W = S::W;
  const index_t H = s.H;
  const bool lstm = s.mode == RnnMode::lstm;
  const index_t GH = lstm ? 4 * H : H, K = GH;
  alignas(64) float buf[kRowBlock * 4 * W];
  const V one = S::set1(1.0f), zero = S::zero();
  for (index_t j = tb; j < te; ++j) {
    const float* panel = s.panels + j * K * 4 * W;
    for (index_t r0 = rb; r0 < re; r0 += kRowBlock) {
      const index_t rows = std::min(kRowBlock, re - r0);
      if (s.dg_next) tile_gemm<S>(s.dg_next + r0 * GH, GH, rows, K, panel, buf);
      for (index_t i = 0; i < rows; ++i) {
        const index_t r = r0 + i;
        const float* acc = buf + i * 4 * W;
        for (int v = 0; v < 4; ++v) {
          const index_t u = j * 4 * W + v * W;
          if (u >= H) break;
          const int n = static_cast<int>(std::min<index_t>(W, H - u));
          V dh;
          if (s.dg_next) {
            dh = S::load(acc + v * W);
          } else {
            dh = s.dh_init ? loadn<S>(s.dh_init + r * H + u, n) : zero;
          }
          if (!s.dy) {  // final pass: the gradient of h0
            storen<S>(s.dh_out + r * H + u, dh, n);
            continue;
          }
          dh = S::add(dh, loadn<S>(s.dy + r * s.ld_dy + u, n));
          float* dg = s.dg_out + r * GH;
          if (lstm) {
            const float* g = s.gates + r * GH;
            const V ig = loadn<S>(g + u, n), fg = loadn<S>(g + H + u, n);
            const V gg = loadn<S>(g + 2 * H + u, n), og = loadn<S>(g + 3 * H + u, n);
            const V c = loadn<S>(s.c + r * H + u, n);
            const V cp = s.cprev ? loadn<S>(s.cprev + r * H + u, n) : zero;
            const V tc = S::tanh(c);
            // dc_t = dc (from t+1) + dh * o * (1 - tanh(c)^2)
            const V dc = S::fma(S::mul(dh, og), S::fnma(tc, tc, one), loadn<S>(s.dc + r * H + u, n));
            const V di = S::mul(dc, gg), df = S::mul(dc, cp), dgg = S::mul(dc, ig), dout = S::mul(dh, tc);
            storen<S>(dg + u, S::mul(di, S::mul(ig, S::sub(one, ig))), n);
            storen<S>(dg + H + u, S::mul(df, S::mul(fg, S::sub(one, fg))), n);
            storen<S>(dg + 2 * H + u, S::mul(dgg, S::fnma(gg, gg, one)), n);
            storen<S>(dg + 3 * H + u, S::mul(dout, S::mul(og, S::sub(one, og))), n);
            storen<S>(s.dc + r * H + u, S::mul(dc, fg), n);
          } else {
            const V h = loadn<S>(s.h + r * s.ld_h + u, n);
            const V dz = s.mode == RnnMode::rnn_tanh ? S::mul(dh, S::fnma(h, h, one)) : S::relu_mask(dh, h);
            storen<S>(dg + u, dz, n);
          }
        }
      }
    }
  }
}

template <class S>
RnnKernels make_kernels() {
  return {S::W, &forward_tiles<S>, &backward_tiles<S>};
}

}  // namespace rnn_detail
}  // namespace fl
