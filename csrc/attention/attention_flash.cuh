// FlashAttention-2 on tensor cores (float16 / bfloat16 in, float32 accumulation), forward and
// backward, as templates instantiated per dtype in attention_flash_{f16,bf16}.cu.
//
// Forward (flash_fwd_kernel): one block = BR query rows of one head (WARPS warps, each MT
// m16 row tiles), K/V streamed in BC-key tiles through a 2-stage cp.async double buffer (the
// next tile's copy in flight while this one is multiplied). Per key tile and warp:
//   S = Q K^T        mma A = Q (registers, or ldmatrix from shared when QREG is off),
//                        B = K tile stored [key][e] -> ldmatrix (non-trans)
//   online softmax   row max over the 4 lanes of a quad (shfl_xor 1, 2), exp2 in base-2 units,
//                    running (m, l) per row in registers, O rescaled by exp2(m_old - m_new)
//   O += P V         P re-packed from the S accumulators straight into A fragments (the
//                    m16n8 C layout of two adjacent n-tiles is the m16k16 A layout), B = V tile
//                    stored [key][e] -> ldmatrix.trans
// Causal: key tiles past the block's last query are never loaded (tile skipping); only tiles
// crossing the diagonal, the last (ragged) tile and masked calls test each element. Blocks
// are launched heaviest-first (reversed query-tile order) so the causal tail fills the SMs.
//
// Backward (flash_bwd_kernel, FlashAttention-2 Algorithm 2): one block = BC keys of one kv
// head (WARPS warps x 16 key rows; 4 by default), K and V resident in shared memory; the block walks every
// query tile (BR rows) of every query head of its GQA group, Q/dO/lse/delta double-buffered:
//   S^T = K Q^T, P^T = exp2(S^T - lse)        (rows = keys: P^T is already an A operand)
//   dV += P^T dO                               (B = dO stored [q][e] -> ldmatrix.trans)
//   dP^T = V dO^T                              (B = dO stored [q][e] -> ldmatrix)
//   dS^T = P^T * (dP^T - delta)
//   dK += dS^T Q                               (B = Q stored [q][e] -> ldmatrix.trans)
//   dQ += dS K: dS^T goes through shared memory (A stored [key][q] -> ldmatrix.trans), the
//       block's BR x E partial product is added to a float32 dq accumulator with atomicAdd
// dK/dV stay in registers for the whole walk (no atomics, deterministic); only dQ is atomic.
// Head dim 256 does not fit dK + dV + the tiles in 255 registers: it runs two passes (dV,
// then dK + dQ), each recomputing P.
#pragma once

#include <cstdlib>

#include "attention/attention_kernels.cuh"

namespace fl {
namespace cuda {
namespace attn {

template <int E_, int WARPS_, int MT_, int BC_, bool QREG_>
struct FwdCfg {
  static constexpr int E = E_, WARPS = WARPS_, MT = MT_, BC = BC_;
  static constexpr bool QREG = QREG_;
  static constexpr int THREADS = WARPS * 32;
  static constexpr int BR = WARPS * 16 * MT;
  // +8 elements (16 bytes) per row: 8 consecutive rows of an ldmatrix start in 8 distinct
  // 16-byte bank groups (pitch 80, 144, 208, 272 or 528 bytes: 16, 16, 80, 16, 16 mod 128).
  static constexpr int LD = E + 8;
  static constexpr int Q_ELEMS = BR * LD;
  static constexpr int KV_ELEMS = BC * LD;
  static constexpr int SMEM_BYTES = (Q_ELEMS + 4 * KV_ELEMS) * 2;  // Q + 2 stages of K and V
  static constexpr int KS = E / 16;   // k-steps of Q K^T
  static constexpr int NS = BC / 8;   // n8 tiles of S
  static constexpr int NO = E / 8;    // n8 tiles of O
  static constexpr int KP = BC / 16;  // k-steps of P V
  static_assert(E % 16 == 0 && BC % 16 == 0, "tile sizes");
};

template <typename T, class C>
__global__ void __launch_bounds__(C::THREADS) flash_fwd_kernel(KArgs a) {
  extern __shared__ __align__(16) unsigned char fa_smem[];
  T* sQ = reinterpret_cast<T*>(fa_smem);
  T* sK = sQ + C::Q_ELEMS;           // 2 stages
  T* sV = sK + 2 * C::KV_ELEMS;      // 2 stages
  constexpr int E = C::E, LD = C::LD, BR = C::BR, BC = C::BC, MT = C::MT;

  const int64_t bh = a.bh0 + blockIdx.y;
  const int64_t q0 = (int64_t(gridDim.x) - 1 - blockIdx.x) * BR;  // heaviest (causal) tiles first
  const int64_t kvh = bh / a.group;
  const T* Q = static_cast<const T*>(a.q.ptr) + a.q.off[bh];
  const T* K = static_cast<const T*>(a.k.ptr) + a.k.off[kvh];
  const T* V = static_cast<const T*>(a.v.ptr) + a.v.off[kvh];
  const int64_t moff = a.mask_kind ? a.mask.off[bh] : 0;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int wrow = warp * 16 * MT;  // first row of this warp within the tile

  int64_t kend = a.S;
  if (a.causal && q0 + BR < kend) kend = q0 + BR;  // keys past the last query: never loaded
  const int64_t nkt = (kend + BC - 1) / BC;

  load_rows_async<T, BR, E, LD, C::THREADS>(sQ, Q, a.q.rs, q0, a.L);
  if (nkt > 0) {
    load_rows_async<T, BC, E, LD, C::THREADS>(sK, K, a.k.rs, 0, a.S);
    load_rows_async<T, BC, E, LD, C::THREADS>(sV, V, a.v.rs, 0, a.S);
  }
  cp_async_commit();

  float o[MT][C::NO][4];
  float m[MT][2], l[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int n = 0; n < C::NO; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][n][e] = 0.0f;
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.0f;
  }
  unsigned qf[C::QREG ? MT : 1][C::QREG ? C::KS : 1][4];

  for (int64_t jt = 0; jt < nkt; ++jt) {
    cp_async_wait_all();  // tile jt (and Q) landed for this thread ...
    __syncthreads();      // ... and for every thread; tile jt-1's stage is free
    if (jt + 1 < nkt) {
      const int st = int((jt + 1) & 1);
      load_rows_async<T, BC, E, LD, C::THREADS>(sK + st * C::KV_ELEMS, K, a.k.rs, (jt + 1) * BC, a.S);
      load_rows_async<T, BC, E, LD, C::THREADS>(sV + st * C::KV_ELEMS, V, a.v.rs, (jt + 1) * BC, a.S);
    }
    cp_async_commit();
    if constexpr (C::QREG) {
      if (jt == 0) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int ks = 0; ks < C::KS; ++ks)
            ldmatrix_x4(qf[mt][ks], sQ + frag_a_rowmajor(lane, LD, wrow + mt * 16, ks * 16));
      }
    }
    const T* k_s = sK + int(jt & 1) * C::KV_ELEMS;
    const T* v_s = sV + int(jt & 1) * C::KV_ELEMS;
    const int64_t k0 = jt * BC;

    // ---- S = Q K^T
    float s[MT][C::NS][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int n = 0; n < C::NS; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mt][n][e] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < C::KS; ++ks) {
      unsigned af[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        if constexpr (C::QREG) {
#pragma unroll
          for (int r = 0; r < 4; ++r) af[mt][r] = qf[mt][ks][r];
        } else {
          ldmatrix_x4(af[mt], sQ + frag_a_rowmajor(lane, LD, wrow + mt * 16, ks * 16));
        }
      }
#pragma unroll
      for (int np = 0; np < C::NS / 2; ++np) {
        unsigned r[4];
        ldmatrix_x4(r, k_s + frag_b_nmajor(lane, LD, ks * 16, np * 16));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_16816<T>(s[mt][2 * np], af[mt], r[0], r[1]);
          mma_16816<T>(s[mt][2 * np + 1], af[mt], r[2], r[3]);
        }
      }
    }

    // ---- scale, mask, online softmax. Element e of n-tile n: row g + (e / 2) * 8, column
    // n * 8 + 2 * t4 + (e % 2) (the m16n8 accumulator layout).
    const bool edge = k0 + BC > a.S || (a.causal && k0 + BC - 1 > q0 + wrow) || a.mask_kind != 0;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t row = q0 + wrow + mt * 16 + g + h * 8;
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < C::NS; ++n) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            float x = s[mt][n][2 * h + e] * a.scale_log2;
            if (edge) {
              const int64_t col = k0 + n * 8 + 2 * t4 + e;
              if (col >= a.S || (a.causal && col > row) || row >= a.L) x = -INFINITY;
              else if (a.mask_kind) x += mask_log2(a, moff, row, col);
            }
            s[mt][n][2 * h + e] = x;
            mx = fmaxf(mx, x);
          }
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_old = m[mt][h];
        const float m_new = fmaxf(m_old, mx);
        // An empty row so far (m = -inf) has nothing to rescale: alpha 0 (never exp2(+inf)).
        const float alpha = m_old == -INFINITY ? 0.0f : ex2(m_old - m_new);
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < C::NS; ++n) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const float p = ex2(s[mt][n][2 * h + e] - m_use);
            s[mt][n][2 * h + e] = p;
            sum += p;
          }
        }
        m[mt][h] = m_new;
        l[mt][h] = l[mt][h] * alpha + sum;  // this lane's partial sum; the quad adds up at the end
#pragma unroll
        for (int n = 0; n < C::NO; ++n) {
          o[mt][n][2 * h] *= alpha;
          o[mt][n][2 * h + 1] *= alpha;
        }
      }
    }

    // ---- O += P V
#pragma unroll
    for (int kk = 0; kk < C::KP; ++kk) {
      unsigned pa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        pa[mt][0] = Num<T>::pack(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        pa[mt][1] = Num<T>::pack(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        pa[mt][2] = Num<T>::pack(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        pa[mt][3] = Num<T>::pack(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int np = 0; np < C::NO / 2; ++np) {
        unsigned r[4];
        ldmatrix_x4_trans(r, v_s + frag_b_kmajor(lane, LD, kk * 16, np * 16));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_16816<T>(o[mt][2 * np], pa[mt], r[0], r[1]);
          mma_16816<T>(o[mt][2 * np + 1], pa[mt], r[2], r[3]);
        }
      }
    }
  }
  cp_async_wait_all();

  // ---- epilogue: O / l (0 for an empty row), lse = (m + log2 l) ln 2 (-inf for an empty row)
  T* out = static_cast<T*>(a.out) + bh * a.L * E;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = q0 + wrow + mt * 16 + g + h * 8;
      float lt = l[mt][h];
      lt += __shfl_xor_sync(0xffffffffu, lt, 1);
      lt += __shfl_xor_sync(0xffffffffu, lt, 2);
      if (row >= a.L) continue;
      const float inv = lt > 0.0f ? 1.0f / lt : 0.0f;
#pragma unroll
      for (int n = 0; n < C::NO; ++n) {
        union {
          unsigned u;
          T e[2];
        } pk;
        pk.e[0] = Num<T>::from_f(o[mt][n][2 * h] * inv);
        pk.e[1] = Num<T>::from_f(o[mt][n][2 * h + 1] * inv);
        *reinterpret_cast<unsigned*>(out + row * E + n * 8 + 2 * t4) = pk.u;
      }
      if (a.lse && t4 == 0) a.lse[bh * a.L + row] = lt > 0.0f ? (m[mt][h] + __log2f(lt)) * kLn2 : -INFINITY;
    }
  }
}

// ---------------------------------------------------------------------------------------
template <int E_, int BR_, bool DV_, bool DKQ_, int WARPS_ = 4>
struct BwdCfg {
  static constexpr int E = E_, BR = BR_, WARPS = WARPS_, THREADS = WARPS * 32, BC = WARPS * 16;
  static constexpr bool DO_DV = DV_, DO_DKQ = DKQ_;
  static constexpr int LD = E + 8;
  static constexpr int LDS = BR + 8;  // dS^T tile [key][q]: pitch 48, 80 or 144 bytes
  static constexpr int KV_ELEMS = BC * LD;
  static constexpr int QT_ELEMS = BR * LD;
  static constexpr int DS_ELEMS = BC * LDS;
  // K, V, 2 stages of Q and dO, dS^T (halves), then 2 stages of lse2 and delta (floats)
  static constexpr int HALF_ELEMS = 2 * KV_ELEMS + 4 * QT_ELEMS + DS_ELEMS;
  static constexpr int SMEM_BYTES = HALF_ELEMS * 2 + 4 * BR * 4;
  static constexpr int KS = E / 16;   // k-steps over the head dim
  static constexpr int NQ = BR / 8;   // n8 tiles over the query tile
  static constexpr int KQ = BR / 16;  // k-steps over the query tile
  static constexpr int NE = E / 8;    // n8 tiles over the head dim
  // dQ = dS K (BR x E) split over the warps: WQM row tiles of 16 x WQN column groups.
  static constexpr int WQM = BR / 16, WQN = WARPS / WQM, QCOLS = E / WQN, NQE = QCOLS / 8;
  static_assert(BR % 16 == 0 && WARPS % WQM == 0 && E % WQN == 0 && QCOLS % 16 == 0, "dQ warp split");
  static_assert((HALF_ELEMS * 2) % 16 == 0, "float section aligned");
};

template <typename T, class C>
__global__ void __launch_bounds__(C::THREADS) flash_bwd_kernel(KArgs a) {
  extern __shared__ __align__(16) unsigned char fb_smem[];
  constexpr int E = C::E, LD = C::LD, LDS = C::LDS, BR = C::BR, BC = C::BC;
  T* sK = reinterpret_cast<T*>(fb_smem);
  T* sV = sK + C::KV_ELEMS;
  T* sQ = sV + C::KV_ELEMS;         // 2 stages
  T* sdO = sQ + 2 * C::QT_ELEMS;    // 2 stages
  T* sdS = sdO + 2 * C::QT_ELEMS;
  float* sL = reinterpret_cast<float*>(fb_smem + C::HALF_ELEMS * 2);  // 2 stages of lse * log2e
  float* sD = sL + 2 * BR;                                            // 2 stages of delta

  const int64_t kvh = a.bh0 + blockIdx.y;
  const int64_t k0 = int64_t(blockIdx.x) * BC;
  const T* K = static_cast<const T*>(a.k.ptr) + a.k.off[kvh];
  const T* V = static_cast<const T*>(a.v.ptr) + a.v.off[kvh];
  const T* dO = static_cast<const T*>(a.dout);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int kr0 = warp * 16;  // this warp's key rows within the tile

  // The walk: every query head of the group, query tiles from the first one that can see
  // key k0 (causal: queries i >= k0) to the last.
  const int64_t nqt_all = (a.L + BR - 1) / BR;
  const int64_t qt_first = a.causal ? (k0 / BR < nqt_all ? k0 / BR : nqt_all) : 0;
  const int64_t nq = nqt_all - qt_first;
  const int64_t steps = nq * a.group;

  auto issue = [&](int64_t step, int st) {
    const int64_t bh = kvh * a.group + step / nq;
    const int64_t q0 = (qt_first + step % nq) * BR;
    const T* Q = static_cast<const T*>(a.q.ptr) + a.q.off[bh];
    load_rows_async<T, BR, E, LD, C::THREADS>(sQ + st * C::QT_ELEMS, Q, a.q.rs, q0, a.L);
    load_rows_async<T, BR, E, LD, C::THREADS>(sdO + st * C::QT_ELEMS, dO + bh * a.L * E, E, q0, a.L);
    for (int i = threadIdx.x; i < BR; i += C::THREADS) {
      const int64_t row = q0 + i;
      float lse2 = INFINITY, dl = 0.0f;  // rows past L (and empty rows): P = exp2(s - inf) = 0
      if (row < a.L) {
        const float ls = a.lse_in[bh * a.L + row];
        lse2 = ls == -INFINITY ? INFINITY : ls * kLog2e;
        dl = a.delta[bh * a.L + row];
      }
      sL[st * BR + i] = lse2;
      sD[st * BR + i] = dl;
    }
  };

  load_rows_async<T, BC, E, LD, C::THREADS>(sK, K, a.k.rs, k0, a.S);
  load_rows_async<T, BC, E, LD, C::THREADS>(sV, V, a.v.rs, k0, a.S);
  if (steps > 0) issue(0, 0);
  cp_async_commit();

  float dk[C::DO_DKQ ? C::NE : 1][4], dv[C::DO_DV ? C::NE : 1][4];
#pragma unroll
  for (int n = 0; n < (C::DO_DKQ ? C::NE : 1); ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = 0.0f;
#pragma unroll
  for (int n = 0; n < (C::DO_DV ? C::NE : 1); ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dv[n][e] = 0.0f;

  for (int64_t step = 0; step < steps; ++step) {
    cp_async_wait_all();
    __syncthreads();  // tile `step` (and K, V, lse, delta) visible; the other stage and dS free
    if (step + 1 < steps) issue(step + 1, int((step + 1) & 1));
    cp_async_commit();
    const int st = int(step & 1);
    const T* q_s = sQ + st * C::QT_ELEMS;
    const T* do_s = sdO + st * C::QT_ELEMS;
    const float* l_s = sL + st * BR;
    const float* d_s = sD + st * BR;
    const int64_t bh = kvh * a.group + step / nq;
    const int64_t q0 = (qt_first + step % nq) * BR;
    const int64_t moff = a.mask_kind ? a.mask.off[bh] : 0;

    // ---- S^T = K Q^T (16 keys x BR queries per warp)
    float p[C::NQ][4];
#pragma unroll
    for (int n = 0; n < C::NQ; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) p[n][e] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < C::KS; ++ks) {
      unsigned af[4];
      ldmatrix_x4(af, sK + frag_a_rowmajor(lane, LD, kr0, ks * 16));
#pragma unroll
      for (int np = 0; np < C::NQ / 2; ++np) {
        unsigned r[4];
        ldmatrix_x4(r, q_s + frag_b_nmajor(lane, LD, ks * 16, np * 16));
        mma_16816<T>(p[2 * np], af, r[0], r[1]);
        mma_16816<T>(p[2 * np + 1], af, r[2], r[3]);
      }
    }
    // ---- P^T: element e of n-tile n is (key kr0 + g + (e/2)*8, query n*8 + 2*t4 + e%2)
    const bool edge = k0 + BC > a.S || q0 + BR > a.L || (a.causal && k0 + BC - 1 > q0) || a.mask_kind != 0;
#pragma unroll
    for (int n = 0; n < C::NQ; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int qc = n * 8 + 2 * t4 + (e & 1);
        float x = p[n][e] * a.scale_log2;
        if (edge) {
          const int64_t key = k0 + kr0 + g + (e >> 1) * 8, qrow = q0 + qc;
          if (key >= a.S || qrow >= a.L || (a.causal && key > qrow)) x = -INFINITY;
          else if (a.mask_kind) x += mask_log2(a, moff, qrow, key);
        }
        p[n][e] = ex2(x - l_s[qc]);
      }
    }

    if (C::DO_DV) {  // ---- dV += P^T dO
#pragma unroll
      for (int kk = 0; kk < C::KQ; ++kk) {
        unsigned pa[4];
        pa[0] = Num<T>::pack(p[2 * kk][0], p[2 * kk][1]);
        pa[1] = Num<T>::pack(p[2 * kk][2], p[2 * kk][3]);
        pa[2] = Num<T>::pack(p[2 * kk + 1][0], p[2 * kk + 1][1]);
        pa[3] = Num<T>::pack(p[2 * kk + 1][2], p[2 * kk + 1][3]);
#pragma unroll
        for (int np = 0; np < C::NE / 2; ++np) {
          unsigned r[4];
          ldmatrix_x4_trans(r, do_s + frag_b_kmajor(lane, LD, kk * 16, np * 16));
          mma_16816<T>(dv[C::DO_DV ? 2 * np : 0], pa, r[0], r[1]);
          mma_16816<T>(dv[C::DO_DV ? 2 * np + 1 : 0], pa, r[2], r[3]);
        }
      }
    }

    if (C::DO_DKQ) {
      // ---- dP^T = V dO^T, then dS^T = P^T (dP^T - delta) in place of P^T
      float dp[C::NQ][4];
#pragma unroll
      for (int n = 0; n < C::NQ; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) dp[n][e] = 0.0f;
#pragma unroll
      for (int ks = 0; ks < C::KS; ++ks) {
        unsigned af[4];
        ldmatrix_x4(af, sV + frag_a_rowmajor(lane, LD, kr0, ks * 16));
#pragma unroll
        for (int np = 0; np < C::NQ / 2; ++np) {
          unsigned r[4];
          ldmatrix_x4(r, do_s + frag_b_nmajor(lane, LD, ks * 16, np * 16));
          mma_16816<T>(dp[2 * np], af, r[0], r[1]);
          mma_16816<T>(dp[2 * np + 1], af, r[2], r[3]);
        }
      }
#pragma unroll
      for (int n = 0; n < C::NQ; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) p[n][e] = p[n][e] * (dp[n][e] - d_s[n * 8 + 2 * t4 + (e & 1)]);

      // ---- dK += dS^T Q, and dS^T to shared memory for dQ
#pragma unroll
      for (int kk = 0; kk < C::KQ; ++kk) {
        unsigned da[4];
        da[0] = Num<T>::pack(p[2 * kk][0], p[2 * kk][1]);
        da[1] = Num<T>::pack(p[2 * kk][2], p[2 * kk][3]);
        da[2] = Num<T>::pack(p[2 * kk + 1][0], p[2 * kk + 1][1]);
        da[3] = Num<T>::pack(p[2 * kk + 1][2], p[2 * kk + 1][3]);
        // (the packed pairs are exactly the dS^T entries (key g(+8), q 2*t4..+1 (+8)))
        *reinterpret_cast<unsigned*>(sdS + (kr0 + g) * LDS + kk * 16 + 2 * t4) = da[0];
        *reinterpret_cast<unsigned*>(sdS + (kr0 + g + 8) * LDS + kk * 16 + 2 * t4) = da[1];
        *reinterpret_cast<unsigned*>(sdS + (kr0 + g) * LDS + kk * 16 + 8 + 2 * t4) = da[2];
        *reinterpret_cast<unsigned*>(sdS + (kr0 + g + 8) * LDS + kk * 16 + 8 + 2 * t4) = da[3];
#pragma unroll
        for (int np = 0; np < C::NE / 2; ++np) {
          unsigned r[4];
          ldmatrix_x4_trans(r, q_s + frag_b_kmajor(lane, LD, kk * 16, np * 16));
          mma_16816<T>(dk[C::DO_DKQ ? 2 * np : 0], da, r[0], r[1]);
          mma_16816<T>(dk[C::DO_DKQ ? 2 * np + 1 : 0], da, r[2], r[3]);
        }
      }
      __syncthreads();  // dS^T complete

      // ---- dQ (BR x E) += dS (BR x BC) K (BC x E): warp -> rows mq, columns nq0 + [0, QCOLS)
      const int mq = (warp % C::WQM) * 16, nq0 = (warp / C::WQM) * C::QCOLS;
      float dqa[C::NQE][4];
#pragma unroll
      for (int n = 0; n < C::NQE; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) dqa[n][e] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < BC / 16; ++kk) {
        unsigned af[4];
        ldmatrix_x4_trans(af, sdS + frag_a_colmajor(lane, LDS, mq, kk * 16));
#pragma unroll
        for (int np = 0; np < C::NQE / 2; ++np) {
          unsigned r[4];
          ldmatrix_x4_trans(r, sK + frag_b_kmajor(lane, LD, kk * 16, nq0 + np * 16));
          mma_16816<T>(dqa[2 * np], af, r[0], r[1]);
          mma_16816<T>(dqa[2 * np + 1], af, r[2], r[3]);
        }
      }
      float* dqg = a.dq_acc + bh * a.L * E;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t row = q0 + mq + g + h * 8;
        if (row >= a.L) continue;
#pragma unroll
        for (int n = 0; n < C::NQE; ++n) {
          float* dst = dqg + row * E + nq0 + n * 8 + 2 * t4;  // 8-byte aligned (E, 2 * t4 even)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
          // one vector reduction (red.global.add.v2.f32) instead of two: half the atomics
          atomicAdd(reinterpret_cast<float2*>(dst), make_float2(dqa[n][2 * h] * a.scale, dqa[n][2 * h + 1] * a.scale));
#else
          atomicAdd(dst, dqa[n][2 * h] * a.scale);
          atomicAdd(dst + 1, dqa[n][2 * h + 1] * a.scale);
#endif
        }
      }
    }
  }
  cp_async_wait_all();

  // ---- dK * scale, dV: rows k0 + kr0 + g (+8), columns n*8 + 2*t4 (+1)
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t key = k0 + kr0 + g + h * 8;
    if (key >= a.S) continue;
#pragma unroll
    for (int n = 0; n < C::NE; ++n) {
      union {
        unsigned u;
        T e[2];
      } pk;
      if (C::DO_DKQ) {
        pk.e[0] = Num<T>::from_f(dk[C::DO_DKQ ? n : 0][2 * h] * a.scale);
        pk.e[1] = Num<T>::from_f(dk[C::DO_DKQ ? n : 0][2 * h + 1] * a.scale);
        *reinterpret_cast<unsigned*>(static_cast<T*>(a.dk) + (kvh * a.S + key) * E + n * 8 + 2 * t4) = pk.u;
      }
      if (C::DO_DV) {
        pk.e[0] = Num<T>::from_f(dv[C::DO_DV ? n : 0][2 * h]);
        pk.e[1] = Num<T>::from_f(dv[C::DO_DV ? n : 0][2 * h + 1]);
        *reinterpret_cast<unsigned*>(static_cast<T*>(a.dv) + (kvh * a.S + key) * E + n * 8 + 2 * t4) = pk.u;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Launchers. Configurations (registers / shared memory per instance in NOTES-attention.md):
//   forward  E=32: 4 warps x 2 row tiles of 16 (BR 128), BC 64, Q fragments in registers
//            E=64, 96, 128: 8 warps x 1 (BR 128), BC 64, Q in registers (E=64 with 4 x 2 spilled)
//            E=256: 4 warps x 1 (BR 64), BC 32, Q read from shared memory per k-step
//            FASTLAYERS_CUDA_ATTN_FWD_CFG=1: E=64 BC 128; E=128 4 warps x 2 (BR 128), BC 16
//   backward 4 warps (BC 64 keys); BR 64 for E=32, 64, BR 32 for E=96, 128, BR 16 and two
//            passes (dV; dK + dQ) for E=256; 8 warps (BC 128) for E=64, 128 with
//            FASTLAYERS_CUDA_ATTN_BWD_CFG=1
template <class Kernel>
void launch_heads(Kernel kern, KArgs a, int64_t tiles, int64_t heads, int threads, int smem, cudaStream_t s,
                  const char* name) {
  FL_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  for (int64_t h0 = 0; h0 < heads; h0 += 65535) {
    KArgs b = a;
    b.bh0 = h0;
    const int64_t nh = heads - h0 < 65535 ? heads - h0 : 65535;
    kern<<<dim3(unsigned(tiles), unsigned(nh)), threads, smem, s>>>(b);
    check_launch(name);
  }
}

template <typename T, class C>
void run_fwd(const KArgs& a, cudaStream_t s) {
  const int64_t tiles = (a.L + C::BR - 1) / C::BR;
  launch_heads(flash_fwd_kernel<T, C>, a, tiles, a.nbh, C::THREADS, C::SMEM_BYTES, s, "flash_fwd_kernel");
}

template <typename T, class C>
void run_bwd(const KArgs& a, cudaStream_t s) {
  const int64_t tiles = (a.S + C::BC - 1) / C::BC;
  launch_heads(flash_bwd_kernel<T, C>, a, tiles, a.nbh / a.group, C::THREADS, C::SMEM_BYTES, s,
               "flash_bwd_kernel");
}

// FASTLAYERS_CUDA_ATTN_FWD_CFG=1: alternative forward tiles for the benchmark to weigh:
// E=64 with BC=128 (half the per-tile softmax bookkeeping and barriers per key), E=128 with
// 4 warps x 2 row tiles and BC=16 (each K/V fragment feeds two MMAs; Q re-read from smem;
// BC=32 there needed 255 registers and spilled 4 bytes on sm_80).
inline int attn_fwd_config() {
  const char* e = std::getenv("FASTLAYERS_CUDA_ATTN_FWD_CFG");
  return (e && e[0] == '1' && e[1] == 0) ? 1 : 0;
}

template <typename T>
void flash_forward_t(const KArgs& a, int64_t E, cudaStream_t s) {
  const int cfg = attn_fwd_config();
  switch (E) {
    case 32: run_fwd<T, FwdCfg<32, 4, 2, 64, true>>(a, s); break;
    case 64:
      if (cfg == 1) run_fwd<T, FwdCfg<64, 8, 1, 128, true>>(a, s);
      else run_fwd<T, FwdCfg<64, 8, 1, 64, true>>(a, s);
      break;
    case 96: run_fwd<T, FwdCfg<96, 8, 1, 64, true>>(a, s); break;
    case 128:
      if (cfg == 1) run_fwd<T, FwdCfg<128, 4, 2, 16, false>>(a, s);
      else run_fwd<T, FwdCfg<128, 8, 1, 64, true>>(a, s);
      break;
    case 256: run_fwd<T, FwdCfg<256, 4, 1, 32, false>>(a, s); break;
    default: FL_CHECK(false, "attention: no flash forward kernel for head dim ", E);
  }
}

// FASTLAYERS_CUDA_ATTN_BWD_CFG=1: the 8-warp backward for E = 64 / 128 (128 keys per block:
// half the dQ atomics and Q/dO tile loads per key, one block per SM instead of two or three).
// Which is faster is for the GPU benchmark to say (NOTES-attention.md).
// (Read at every call, ~100 ns, so that the benchmark can time both in one process.)
inline int attn_bwd_config() {
  const char* e = std::getenv("FASTLAYERS_CUDA_ATTN_BWD_CFG");
  return (e && e[0] == '1' && e[1] == 0) ? 1 : 0;
}

template <typename T>
void flash_backward_t(const KArgs& a, int64_t E, cudaStream_t s) {
  const int cfg = attn_bwd_config();
  switch (E) {
    case 32: run_bwd<T, BwdCfg<32, 64, true, true>>(a, s); break;
    case 64:
      if (cfg == 1) run_bwd<T, BwdCfg<64, 64, true, true, 8>>(a, s);
      else run_bwd<T, BwdCfg<64, 64, true, true>>(a, s);
      break;
    case 96: run_bwd<T, BwdCfg<96, 32, true, true>>(a, s); break;
    case 128:
      if (cfg == 1) run_bwd<T, BwdCfg<128, 32, true, true, 8>>(a, s);
      else run_bwd<T, BwdCfg<128, 32, true, true>>(a, s);
      break;
    case 256:
      run_bwd<T, BwdCfg<256, 16, true, false>>(a, s);
      run_bwd<T, BwdCfg<256, 16, false, true>>(a, s);
      break;
    default: FL_CHECK(false, "attention: no flash backward kernel for head dim ", E);
  }
}

}  // namespace attn
}  // namespace cuda
}  // namespace fl
