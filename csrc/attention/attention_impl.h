// The attention tile loops, written once over a SIMD traits type S and instantiated by each
// ISA translation unit (attention_avx2.cpp, attention_avx512.cpp, attention_generic.cpp), so
// the AVX-512 path is the AVX2 path with wider vectors by construction.
//
// S provides: V (vector), W (lanes), MR/NR (the GEMM micro-kernel's register tile, which it
// also returns from ukernel(); the backward uses that micro-kernel), zero/set1/load/store/
// bcast/add/sub/mul/fma/max, exp (exact 0 below e^-87.3) and exp2 (exact 0 for x <= -126.5),
// so masked -inf scores give p = 0, select_gt(a, b, x, y) = a > b ? x : y, any_gt(a, b),
// transpose8 (an 8 x 8 block with a per-row multiplier).
//
// Layout: every score tile is stored key-major, S^T (keys x queries), in panels of NR
// queries, so the softmax runs down the keys of a panel with whole vectors across NR
// queries: row max, row sum, the running max/sum and the rescale are vertical vector ops (no
// horizontal reductions, no shuffles).
//
// Forward: two register kernels of their own (not the GEMM micro-kernel), per panel and
// key tile of kFwdBC keys:
//   - s_tile: MR keys x NR queries of S^T = K Q^T in MR x NV registers, K's rows read in
//     place (one broadcast per element: no packing), Q^T panel transposed once per block
//     and pre-scaled by scale * log2(e); its epilogue takes the column max in registers, or
//     (fused path, see block) computes P = 2^(S - m) and its column sums right there;
//   - pv_tile: MR rows of O^T (Ev x NR) += V^T P^T, V's rows read in place, the P^T panel
//     from L1, the accumulators loaded from O^T and stored back (no alpha/beta work); the
//     last Ev % MR rows get a tile of exactly that height.
// The running max moves lazily (only when a score passes it by more than 2^8), so after the
// first tile of a row the softmax is folded into s_tile and nothing is rescaled; a tile that
// breaks the bound is redone by the two-pass path. O^T is transposed into O once at the end.
// Work items are (bh, block of BR queries), scheduled dynamically (causal blocks differ in
// cost), heaviest first; with many heads a thread takes a whole head at a time (its K/V
// stay in cache). The causal mask is top-left aligned: a panel stops at the key equal to its
// last query, so fully masked tiles are never computed and a causal call does about half
// the work of a full one. Memory: per thread a few hundred KiB of tiles; nothing of size
// L x S.
//
// Backward (FlashAttention-2): work items are (kv head, block of BC keys); each owns dK/dV of
// its keys (all query heads of its GQA group are summed inside the item, so no two threads
// write the same dK/dV rows). For a query block it recomputes S^T and dP^T = V dO^T, forms
// P = exp(S - lse) and dS = P * (dP - D), D = rowsum(dO * O) precomputed, and accumulates
//   dQ^T = K^T dS^T  (B = the dS^T panel in place),
//   dV  += P^T dO,   dK += dS^T Q  (A = P^T / dS^T repacked query-major per MR keys).
// dQ rows are shared by all key blocks: when the kv heads split evenly over the threads each
// thread owns whole heads (race-free, no copies); otherwise each thread accumulates dQ in a
// private buffer (extra memory (threads - 1) x |dQ|) and the buffers are summed afterwards.
//
// History (B=1, H=4, L=S=512, E=64, one thread, CPU time, vs torch 2.13's CPU flash kernel):
//   v1 64-query blocks, K/V packed per block, Cephes exp:          4.2 ms (torch 4.0 ms)
//   v2 256-query blocks (packing amortised):                       4.0 ms
//   v3 exp2 with log2(e) folded into the QK^T scale (-4 ops/elem):  3.8 ms
//   v4 K/V packed once per head per thread:        L=4096 443 ms (torch 479 ms), causal 224 (269)
// The two GEMMs (the 6x16 micro-kernel near its peak) were ~75% of the time, the softmax
// (exp) ~12%, packing/transposes ~8%. Then (same runs, machine shared, CPU time; B=4 H=8 and
// B=1 H=8 L=4096 are the benchmark's shapes, at one thread):
//   v5 own S and P V register kernels, K/V in place, degree-5 exp2 without compare/blend,
//      lazy max, softmax fused into the S kernel, AVX transposes, 192-key tiles:
//      B1 H4 L512 3.80 -> 3.3 ms; B4 H8 L512 25.9 ms (torch 31.4); L=4096 447 -> 401 ms
//      (torch 488), causal 222 -> 199 ms (torch 270). Now s_tile (with the exp) ~50% and
//      pv_tile ~46% of the time, each at ~92% of the FMA peak in its loop.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>

#include "attention/attention.h"
#include "core/parallel.h"
#include "gemm/ukernel.h"

namespace fl {
namespace attn_detail {

// BC keys per block: a multiple of every micro-kernel's MR (6, 12, 4). 96 keys x 64 floats of
// packed K plus the same of V is 48 KiB, beside Q/O/S^T panels of 64 queries: ~130 KiB per
// thread at E = 64, inside the 512 KiB L2 per core here (E = 256 stays under ~400 KiB).
constexpr index_t kBC = 96;
// The forward's key tile: 192 rather than 96 halves the per-tile costs (the P V kernel's
// O^T load/store, the fused softmax's bookkeeping): ~2% at L = 4096 (85.7 vs 84.1 GFLOP/s,
// one thread); its K/V tile (96 KiB at E = 64) stays in L2.
constexpr index_t kFwdBC = 192;
constexpr index_t kQueriesPerBlock = 64;

inline index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }
inline index_t round16(index_t n) { return (n + 15) / 16 * 16; }  // 64-byte multiples of floats

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float, FreeDeleter>;

inline Buffer alloc_floats(index_t n) {
  const std::size_t bytes = static_cast<std::size_t>(round16(std::max<index_t>(n, 16))) * sizeof(float);
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return Buffer(static_cast<float*>(p));
}

// Carves 64-byte aligned sub-buffers out of one thread's workspace.
struct Carver {
  float* at;
  float* take(index_t n) {
    float* r = at;
    at += round16(n);
    return r;
  }
};

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kPosInf = std::numeric_limits<float>::infinity();
// The forward keeps scores in log2 units (scale * log2(e) folded into the QK^T GEMM), so its
// softmax uses exp2, which needs no range reduction multiply: 4 fewer vector ops per element
// of the ~23 the softmax spends on it.
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2 = 0.693147180559945309f;

// Mask of one query panel against one key: adds the float mask or sets -inf where the bool
// mask is False, for the nq valid queries of the panel (row = S^T row of key `key`).
// Scores in log2 units (the forward) scale the additive mask by `mul` = log2(e).
inline void apply_mask_row(const AttentionParams& p, index_t bh, index_t q_first, index_t nq, index_t key,
                           float* row, float mul) {
  if (p.mask_kind == MaskKind::additive) {
    const float* m = p.mask_f.ptr + p.mask_f.off[bh] + q_first * p.mask_f.rs + key * p.mask_f.cs;
    const index_t rs = p.mask_f.rs;
    for (index_t j = 0; j < nq; ++j) row[j] += m[j * rs] * mul;
  } else if (p.mask_kind == MaskKind::boolean) {
    const std::uint8_t* m = p.mask_b.ptr + p.mask_b.off[bh] + q_first * p.mask_b.rs + key * p.mask_b.cs;
    const index_t rs = p.mask_b.rs;
    for (index_t j = 0; j < nq; ++j)
      if (!m[j * rs]) row[j] = kNegInf;
  }
}

// Q^T panel: dst[e * NR + j] = X[row0 + j][e] for j < n, zero for padded queries.
template <int NR>
inline void pack_rows_transposed(const float* x, index_t rs, index_t cs, index_t row0, index_t n, index_t cols,
                                 float* dst) {
  for (index_t j = 0; j < NR; ++j) {
    if (j < n) {
      const float* src = x + (row0 + j) * rs;
      for (index_t e = 0; e < cols; ++e) dst[e * NR + j] = src[e * cs];
    } else {
      for (index_t e = 0; e < cols; ++e) dst[e * NR + j] = 0.0f;
    }
  }
}

// Packed A of `cols`-long rows, MR rows per tile: dst[t][c * MR + i] = X[row0 + t*MR + i][c].
template <int MR>
inline void pack_a_rows(const float* x, index_t rs, index_t cs, index_t row0, index_t n, index_t cols, float* dst) {
  const index_t tiles = ceil_div(n, MR);
  for (index_t t = 0; t < tiles; ++t) {
    float* d = dst + t * cols * MR;
    if (cs == 1 && (t + 1) * MR <= n) {
      // Full tile of unit-stride rows: MR loads and one contiguous run of MR stores per column
      // (the row-by-row order wrote with a stride of MR and cost ~2x as much).
      const float* src[MR];
      for (int i = 0; i < MR; ++i) src[i] = x + (row0 + t * MR + i) * rs;
      for (index_t c = 0; c < cols; ++c)
        for (int i = 0; i < MR; ++i) d[c * MR + i] = src[i][c];
      continue;
    }
    for (index_t i = 0; i < MR; ++i) {
      const index_t r = t * MR + i;
      if (r < n) {
        const float* src = x + (row0 + r) * rs;
        for (index_t c = 0; c < cols; ++c) d[c * MR + i] = src[c * cs];
      } else {
        for (index_t c = 0; c < cols; ++c) d[c * MR + i] = 0.0f;
      }
    }
  }
}

// Packed A of the transpose, MR columns per tile (kc = rows): dst[t][r * MR + i] =
// X[row0 + r][t*MR + i], zero past `cols`. Tiles are `stride` floats apart.
template <int MR>
inline void pack_a_cols(const float* x, index_t rs, index_t cs, index_t row0, index_t n, index_t cols,
                        index_t stride, float* dst) {
  const index_t tiles = ceil_div(cols, MR);
  for (index_t t = 0; t < tiles; ++t) {
    float* d = dst + t * stride;
    const index_t c0 = t * MR, mc = std::min<index_t>(MR, cols - c0);
    if (cs == 1 && mc == MR) {
      for (index_t r = 0; r < n; ++r) std::memcpy(d + r * MR, x + (row0 + r) * rs + c0, sizeof(float) * MR);
      continue;
    }
    for (index_t r = 0; r < n; ++r) {
      const float* src = x + (row0 + r) * rs + c0 * cs;
      index_t i = 0;
      for (; i < mc; ++i) d[r * MR + i] = src[i * cs];
      for (; i < MR; ++i) d[r * MR + i] = 0.0f;
    }
  }
}

// Packed B of rows, NR columns per panel (kc = rows): dst[t][r * NR + j] = X[row0 + r][t*NR + j].
template <int NR>
inline void pack_b_rows(const float* x, index_t rs, index_t cs, index_t row0, index_t n, index_t cols,
                        index_t stride, float* dst) {
  const index_t panels = ceil_div(cols, NR);
  for (index_t t = 0; t < panels; ++t) {
    float* d = dst + t * stride;
    const index_t c0 = t * NR, nc = std::min<index_t>(NR, cols - c0);
    for (index_t r = 0; r < n; ++r) {
      const float* src = x + (row0 + r) * rs + c0 * cs;
      index_t j = 0;
      for (; j < nc; ++j) d[r * NR + j] = src[j * cs];
      for (; j < NR; ++j) d[r * NR + j] = 0.0f;
    }
  }
}

// Rows [row0, row0 + n) of a strided matrix into a contiguous (n x cols) buffer.
inline void copy_rows(const float* x, index_t rs, index_t cs, index_t row0, index_t n, index_t cols, float* dst) {
  for (index_t r = 0; r < n; ++r) {
    const float* src = x + (row0 + r) * rs;
    for (index_t c = 0; c < cols; ++c) dst[r * cols + c] = src[c * cs];
  }
}

// ------------------------------------------------------------------------------------------
// Forward
// ------------------------------------------------------------------------------------------

// Forward query block: as many NR-query panels as keep Q^T, O^T and S^T panels within
// ~256 KiB (half the L2 here), beside the K/V tile (96 KiB at E = 64): a key tile comes from
// L3 once per block and from L2 for each of its panels.
inline index_t forward_panels(index_t nr, index_t E, index_t Ev) {
  const index_t bytes_per_panel = nr * (E + Ev + kFwdBC + 8) * static_cast<index_t>(sizeof(float));
  return std::max<index_t>(1, std::min<index_t>(16, (index_t{256} << 10) / bytes_per_panel));
}

template <class S>
struct Forward {
  using V = typename S::V;
  static constexpr int W = S::W, MR = S::MR, NR = S::NR, NV = NR / W;
  static_assert(NR % W == 0, "NR must be a whole number of vectors");
  static_assert(kFwdBC % MR == 0, "BC must be a multiple of MR");

  const AttentionParams& p;
  index_t NP;  // query panels per block
  index_t BR;  // queries per block (NP * NR)

  index_t workspace_floats() const {
    return round16(NP * p.E * NR) + round16(NP * kFwdBC * NR) + round16(NP * p.Ev * NR) + round16(kFwdBC * p.E) +
           round16(kFwdBC * p.Ev) + 3 * round16(BR) + 64;
  }

  void block(index_t bh, index_t q0, float* ws) const {
    const index_t L = p.L, E = p.E, Ev = p.Ev;
    const index_t nq = std::min(BR, L - q0), np = ceil_div(nq, NR);
    Carver c{ws};
    float* qp = c.take(NP * E * NR);
    float* st = c.take(NP * kFwdBC * NR);
    float* ot = c.take(NP * Ev * NR);
    float* kbuf = c.take(kFwdBC * E);
    float* vbuf = c.take(kFwdBC * Ev);
    float* mrow = c.take(BR);
    float* lrow = c.take(BR);
    float* qidx = c.take(BR);

    const float* Q = p.q.ptr + p.q.off[bh];
    const index_t kv = bh / p.group;
    const float* K = p.k.ptr + p.k.off[kv];
    const float* Vm = p.v.ptr + p.v.off[kv];

    // Q^T panels pre-scaled by scale * log2(e): the scores come out of the S kernel in log2
    // units with no multiply in its epilogue.
    const float qscale = p.scale * kLog2e;
    for (index_t jp = 0; jp < np; ++jp)
      pack_q_panel(Q, p.q.rs, p.q.cs, q0 + jp * NR, std::min<index_t>(NR, nq - jp * NR), E, qp + jp * E * NR,
                   qscale);
    std::memset(ot, 0, sizeof(float) * np * Ev * NR);
    for (index_t j = 0; j < BR; ++j) {
      mrow[j] = kNegInf;
      lrow[j] = 0.0f;
      qidx[j] = static_cast<float>(q0 + j);
    }

    const index_t kend = p.causal ? std::min(p.S, q0 + nq) : p.S;
    for (index_t k0 = 0; k0 < kend; k0 += kFwdBC) {
      const index_t nk = std::min(kFwdBC, kend - k0);
      // K and V are read in place (the kernels broadcast single elements of their rows, so
      // unit column stride is all they need: no packing, which cost ~3% at L = 512); a view
      // with strided columns is copied tile by tile.
      const float* kt = K + k0 * p.k.rs;
      index_t krs = p.k.rs;
      if (p.k.cs != 1) {
        copy_rows(K, p.k.rs, p.k.cs, k0, nk, E, kbuf);
        kt = kbuf;
        krs = E;
      }
      const float* vt = Vm + k0 * p.v.rs;
      index_t vrs = p.v.rs;
      if (p.v.cs != 1) {
        copy_rows(Vm, p.v.rs, p.v.cs, k0, nk, Ev, vbuf);
        vt = vbuf;
        vrs = Ev;
      }
      for (index_t jp = 0; jp < np; ++jp) {
        const index_t qf = q0 + jp * NR, nqp = std::min<index_t>(NR, nq - jp * NR);
        // Causal: this panel needs keys up to its last query only.
        const index_t nkp = p.causal ? std::min(nk, qf + nqp - k0) : nk;
        if (nkp <= 0) continue;
        float* sp = st + jp * kFwdBC * NR;
        const float* qpp = qp + jp * E * NR;
        const index_t full = nkp / MR, rem = nkp % MR;
        const bool causal = p.causal && k0 + nkp - 1 > qf;  // some key of the tile lies past a query
        float* op = ot + jp * Ev * NR;
        float* m = mrow + jp * NR;
        float* l = lrow + jp * NR;
        // Fast path, once a row max is known and no mask applies to the tile: P = 2^(S - m)
        // computed in the S kernel's registers with the running max m as it stands (the lazy
        // rescale's bound: valid while no score exceeds m + kLazy), which saves the softmax
        // its own pass over the tile (load, store, loop: ~3% of the forward). A tile with a
        // score beyond the bound is computed again by the two-pass path below.
        // The first tile of a row takes its first MR keys' max as m (their S stored as is,
        // exponentiated after the tile), so it is fused too: at L = 512 one tile in three.
        bool fused = !causal && p.mask_kind == MaskKind::none && (k0 > 0 || full > 0);
        if (fused) {
          index_t t0 = 0;
          if (k0 == 0) {
            V g[NV];
            for (int v = 0; v < NV; ++v) g[v] = S::set1(kNegInf);
            s_tile<MR, false>(E, kt, krs, qpp, sp, g, nullptr);
            for (int v = 0; v < NV; ++v) S::store(m + v * W, g[v]);
            t0 = 1;
          }
          Fuse fz;
          for (int v = 0; v < NV; ++v) {
            const V mv = S::load(m + v * W);
            fz.mu[v] = mv;  // finite: every row saw a score in the first keys (no mask here)
            fz.lim[v] = S::add(mv, S::set1(kLazy));
            fz.sum[v] = S::zero();
          }
          for (index_t t = t0; t < full; ++t)
            s_tile<MR, true>(E, kt + t * MR * krs, krs, qpp, sp + t * MR * NR, fz.mu, &fz);
          if (rem)
            with_rows<MR - 1>(static_cast<int>(rem), [&](auto r) {
              s_tile<decltype(r)::value, true>(E, kt + full * MR * krs, krs, qpp, sp + full * MR * NR, fz.mu, &fz);
            });
          if (fz.bad) {
            fused = false;
            if (k0 == 0)
              for (index_t j = 0; j < NR; ++j) m[j] = kNegInf;  // the two-pass path starts afresh
          } else {
            if (k0 == 0)
              for (int i = 0; i < MR; ++i)
                for (int v = 0; v < NV; ++v) {
                  const V e = S::exp2(S::sub(S::load(sp + i * NR + v * W), fz.mu[v]));
                  S::store(sp + i * NR + v * W, e);
                  fz.sum[v] = S::add(fz.sum[v], e);
                }
            for (int v = 0; v < NV; ++v) S::store(l + v * W, S::add(S::load(l + v * W), fz.sum[v]));
          }
        }
        if (!fused) {
          V mx[NV];
          for (int v = 0; v < NV; ++v) mx[v] = S::set1(kNegInf);
          for (index_t t = 0; t < full; ++t)
            s_tile<MR, false>(E, kt + t * MR * krs, krs, qpp, sp + t * MR * NR, mx, nullptr);
          if (rem)
            with_rows<MR - 1>(static_cast<int>(rem), [&](auto r) {
              s_tile<decltype(r)::value, false>(E, kt + full * MR * krs, krs, qpp, sp + full * MR * NR, mx, nullptr);
            });
          if (causal || p.mask_kind != MaskKind::none) mask_panel(bh, k0, nkp, qf, nqp, causal, sp, qidx + jp * NR, mx);
          softmax_panel(nkp, sp, m, l, mx, k0 == 0 ? nullptr : op);
        }
        const index_t vfull = Ev / MR, vrem = Ev % MR;
        for (index_t t = 0; t < vfull; ++t) pv_tile<MR>(nkp, vt + t * MR, vrs, sp, op + t * MR * NR);
        if (vrem)
          with_rows<MR - 1>(static_cast<int>(vrem), [&](auto r) {
            pv_tile<decltype(r)::value>(nkp, vt + vfull * MR, vrs, sp, op + vfull * MR * NR);
          });
      }
    }

    // O = O^T / l, transposed into the output rows; empty rows (l == 0) give zeros.
    for (index_t jp = 0; jp < np; ++jp) {
      const float* op = ot + jp * Ev * NR;
      const index_t nqp = std::min<index_t>(NR, nq - jp * NR);
      const index_t qf = q0 + jp * NR;
      float inv[NR];
      for (index_t j = 0; j < NR; ++j) {
        const float l = lrow[jp * NR + j];
        inv[j] = l > 0.0f ? 1.0f / l : 0.0f;
        if (p.lse && j < nqp) p.lse[bh * L + qf + j] = l > 0.0f ? mrow[jp * NR + j] * kLn2 + std::log(l) : kNegInf;
      }
      float* dst = p.out + (bh * L + qf) * Ev;
      const index_t n8 = nqp / 8 * 8, e8 = Ev / 8 * 8;
      for (index_t j = 0; j < n8; j += 8)
        for (index_t e = 0; e < e8; e += 8) S::transpose8(op + e * NR + j, NR, dst + j * Ev + e, Ev, inv + j);
      for (index_t j = 0; j < nqp; ++j)
        for (index_t e = j < n8 ? e8 : 0; e < Ev; ++e) dst[j * Ev + e] = op[e * NR + j] * inv[j];
    }
  }

  // One Q^T panel (E x NR, queries [row0, row0 + n), zero past n), times mul; 8 x 8 blocks
  // through S::transpose8 when the rows are unit-stride, the edges element by element.
  static void pack_q_panel(const float* x, index_t rs, index_t cs, index_t row0, index_t n, index_t cols,
                           float* dst, float mul) {
    index_t n8 = 0, c8 = 0;
    if (cs == 1) {
      n8 = n / 8 * 8;
      c8 = cols / 8 * 8;
      float m8[8];
      for (int i = 0; i < 8; ++i) m8[i] = mul;
      for (index_t j = 0; j < n8; j += 8)
        for (index_t e = 0; e < c8; e += 8) S::transpose8(x + (row0 + j) * rs + e, rs, dst + e * NR + j, NR, m8);
    }
    for (index_t j = 0; j < NR; ++j) {
      if (j < n) {
        const float* src = x + (row0 + j) * rs;
        for (index_t e = j < n8 ? c8 : 0; e < cols; ++e) dst[e * NR + j] = src[e * cs] * mul;
      } else {
        for (index_t e = 0; e < cols; ++e) dst[e * NR + j] = 0.0f;
      }
    }
  }

  // Calls f(std::integral_constant<int, r>) for a runtime 1 <= r <= R: the remainder tiles
  // get a register tile of exactly their size (the padded MR-row tile wasted 3% of the P V
  // FMAs at Ev = 64 with MR = 6).
  template <int R, class Fn>
  static void with_rows(int r, Fn&& f) {
    if constexpr (R >= 1) {
      if (r == R) return f(std::integral_constant<int, R>{});
      with_rows<R - 1>(r, f);
    }
  }

  // The fused-softmax state of one panel and tile (see block): the shift mu = m, the bound
  // m + kLazy, the column sums, and whether a score went past the bound.
  struct Fuse {
    V mu[NV], lim[NV], sum[NV];
    bool bad = false;
  };

  // R rows of S^T (keys) of one panel: st[i][q] = sum_e K[i][e] Q^T[e][q], K's rows read in
  // place (kr[i * krs + e]), Q^T panel pre-scaled. EXP = false: S stored, its column max
  // folded into mx. EXP = true: P = 2^(S - fz->mu) stored and summed (mx unused), fz->bad
  // set if a score exceeds fz->lim.
  template <int R, bool EXP>
  static void s_tile(index_t E, const float* kr, index_t krs, const float* qp, float* st, V (&mx)[NV], Fuse* fz) {
    const float* k[R];
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i) k[i] = kr + i * krs;
    V acc[R][NV];
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = S::zero();
#pragma GCC unroll 4
    for (index_t e = 0; e < E; ++e) {
      V b[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) b[v] = S::load(qp + e * NR + v * W);
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i) {
        const V a = S::bcast(k[i] + e);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = S::fma(a, b[v], acc[i][v]);
      }
    }
    // Column max in registers, folded into mx (or checked against the bound) once: a chain
    // of max through mx, which may live in memory, cost ~10% of this kernel.
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      V t = acc[0][v];
#pragma GCC unroll 16
      for (int i = 1; i < R; ++i) t = S::max(t, acc[i][v]);
      if constexpr (EXP) {
        if (S::any_gt(t, fz->lim[v])) fz->bad = true;
      } else {
        mx[v] = S::max(mx[v], t);
      }
    }
    if constexpr (EXP) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        V sum = S::zero();  // in registers: fz->sum is folded once (it may live in memory)
#pragma GCC unroll 16
        for (int i = 0; i < R; ++i) {
          const V e = S::exp2(S::sub(acc[i][v], mx[v]));
          sum = S::add(sum, e);
          S::store(st + i * NR + v * W, e);
        }
        fz->sum[v] = S::add(fz->sum[v], sum);
      }
    } else {
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) S::store(st + i * NR + v * W, acc[i][v]);
    }
  }

  // O^T rows [0, R) of one panel += V^T P^T over nk keys: V read in place (R consecutive
  // elements vr[k * vrs + i] of each key's row), P^T panel pt[k * NR + q]. The accumulators
  // start from O^T itself, so the epilogue is a plain store (no alpha/beta multiplies).
  template <int R>
  static void pv_tile(index_t nk, const float* vr, index_t vrs, const float* pt, float* op) {
    V acc[R][NV];
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = S::load(op + i * NR + v * W);
#pragma GCC unroll 4
    for (index_t k = 0; k < nk; ++k) {
      V b[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) b[v] = S::load(pt + k * NR + v * W);
#pragma GCC unroll 16
      for (int i = 0; i < R; ++i) {
        const V a = S::bcast(vr + k * vrs + i);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = S::fma(a, b[v], acc[i][v]);
      }
    }
#pragma GCC unroll 16
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) S::store(op + i * NR + v * W, acc[i][v]);
  }

  // Masks (the attn_mask, and causal on a tile that crosses the diagonal) applied to rows
  // [0, nk) of one S^T panel, and the column max taken again over the masked scores.
  void mask_panel(index_t bh, index_t k0, index_t nk, index_t qf, index_t nq, bool causal, float* sp,
                  const float* qidx, V (&mx)[NV]) const {
    const V ninf = S::set1(kNegInf);
    V qv[NV];
    for (int v = 0; v < NV; ++v) {
      qv[v] = S::load(qidx + v * W);
      mx[v] = ninf;
    }
    for (index_t r = 0; r < nk; ++r) {
      float* row = sp + r * NR;
      if (p.mask_kind != MaskKind::none) apply_mask_row(p, bh, qf, nq, k0 + r, row, kLog2e);
      const V key = S::set1(static_cast<float>(k0 + r));
      for (int v = 0; v < NV; ++v) {
        V s = S::load(row + v * W);
        if (causal) {
          s = S::select_gt(key, qv[v], ninf, s);
          S::store(row + v * W, s);
        }
        mx[v] = S::max(mx[v], s);
      }
    }
  }

  // Online softmax over rows [0, nk) of one S^T panel whose column max is mx: the running
  // max m moves only when a score exceeds it by more than kLazy (log2 units) — then O^T and
  // l are rescaled — so after the first tiles of a row (scores of random data in log2 units
  // have a spread of a few units) a tile costs no rescale at all; P = 2^(S - m) <= 2^kLazy
  // stays far from overflow. P is written in place, l += its column sums. op == nullptr: the
  // first key tile, O^T and l are still 0 and need no rescale.
  static constexpr float kLazy = 8.0f;
  void softmax_panel(index_t nk, float* sp, float* m, float* l, const V (&mx)[NV], float* op) const {
    const V ninf = S::set1(kNegInf), lazy = S::set1(kLazy);
    V mu[NV], mold[NV], mnew[NV];
    bool grow = false;
    for (int v = 0; v < NV; ++v) {
      mold[v] = S::load(m + v * W);
      // m_old = -inf (nothing seen yet): -inf + 8 = -inf, so any finite max is taken.
      mnew[v] = S::select_gt(mx[v], S::add(mold[v], lazy), mx[v], mold[v]);
      grow = grow || S::any_gt(mx[v], S::add(mold[v], lazy));
    }
    for (int v = 0; v < NV; ++v) mu[v] = S::select_gt(mnew[v], ninf, mnew[v], S::zero());  // all -inf so far: 0
    if (grow && !op) {
      for (int v = 0; v < NV; ++v) S::store(m + v * W, mnew[v]);
    } else if (grow) {
      // corr = 2^(m_old - m_new): 0 for m_old = -inf (exp2 clamps), 1 where m did not move.
      V corr[NV];
      for (int v = 0; v < NV; ++v) {
        corr[v] = S::exp2(S::sub(mold[v], mu[v]));
        S::store(m + v * W, mnew[v]);
        S::store(l + v * W, S::mul(S::load(l + v * W), corr[v]));
      }
      for (index_t r = 0; r < p.Ev; ++r)
        for (int v = 0; v < NV; ++v) S::store(op + r * NR + v * W, S::mul(S::load(op + r * NR + v * W), corr[v]));
    }
    V sum[NV];
    for (int v = 0; v < NV; ++v) sum[v] = S::zero();
#pragma GCC unroll 2
    for (index_t r = 0; r < nk; ++r) {
      float* row = sp + r * NR;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const V e = S::exp2(S::sub(S::load(row + v * W), mu[v]));
        S::store(row + v * W, e);
        sum[v] = S::add(sum[v], e);
      }
    }
    for (int v = 0; v < NV; ++v) S::store(l + v * W, S::add(S::load(l + v * W), sum[v]));
  }
};

template <class S>
void forward(const AttentionParams& p) {
  using F = Forward<S>;
  FL_CHECK(!p.causal || (p.L < (index_t{1} << 24) && p.S < (index_t{1} << 24)),
           "scaled_dot_product_attention: is_causal supports L, S < 2^24");
  if (p.nbh == 0 || p.L == 0) return;
  // Blocks of equal size (L = 512 at 12 panels per block would give 12 + 12 + 8 panels; 11 +
  // 11 + 10 keeps every block's fixed costs, Q^T transpose and K/V tile fetches, as amortised).
  const index_t panels = ceil_div(p.L, S::NR);
  const index_t np = ceil_div(panels, ceil_div(panels, forward_panels(S::NR, p.E, p.Ev)));
  F f{p, np, np * S::NR};
  const index_t nqb = ceil_div(p.L, f.BR);
  const index_t items = p.nbh * nqb;
  const index_t work = items * f.BR * std::max<index_t>(p.S, 1) * (p.E + p.Ev);
  int nt = p.num_threads > 0 ? p.num_threads : threads_for(work, index_t{1} << 18);
  nt = static_cast<int>(std::min<index_t>(nt, items));
  // Whole heads per thread (dynamic chunks of one head's blocks) when there are heads enough
  // to balance the threads, so that a head's K/V stay in the thread's cache from one query
  // block to the next; otherwise (few long heads: the L = 16384 single head) blocks are
  // balanced one by one.
  const index_t chunk = nqb > 1 && p.nbh >= 4 * nt ? nqb : 1;
  const index_t per = round16(f.workspace_floats());
  Buffer ws = alloc_floats(per * nt);
#pragma omp parallel num_threads(nt)
  {
    float* mine = ws.get() + per * omp_get_thread_num();
#pragma omp for schedule(dynamic, chunk)
    for (index_t it = 0; it < items; ++it) {
      const index_t bh = it / nqb, qb = nqb - 1 - it % nqb;  // late (causal: costly) blocks first
      f.block(bh, qb * f.BR, mine);
    }
  }
}

// ------------------------------------------------------------------------------------------
// Backward
// ------------------------------------------------------------------------------------------

template <class S>
struct Backward {
  using V = typename S::V;
  static constexpr int W = S::W, MR = S::MR, NR = S::NR, NV = NR / W;
  static constexpr index_t NP = std::max<index_t>(1, kQueriesPerBlock / NR);
  static constexpr index_t BR = NP * NR;

  const AttentionParams& p;
  UkernelFn uk;
  const float* dvec;    // D = rowsum(dO * O), (nbh, L)
  const float* lsevec;  // lse with -inf (empty rows) replaced by +inf so that P = 0
  index_t e_tiles, e_panels, ev_panels;  // ceil(E / MR), ceil(E / NR), ceil(Ev / NR)

  index_t workspace_floats() const {
    const index_t E = p.E, Ev = p.Ev;
    return round16(kBC * E) + round16(kBC * Ev) + round16(e_tiles * MR * kBC) + round16(NP * E * NR) +
           round16(NP * Ev * NR) + round16(e_panels * NR * BR) + round16(ev_panels * NR * BR) +
           2 * round16(NP * kBC * NR) + 2 * round16(kBC * BR) + round16(e_tiles * MR * NR) +
           round16(kBC * E) + round16(kBC * Ev) + 3 * round16(BR) + 64;
  }

  // One kv head g, keys [k0, k0 + nk): accumulates into dq_target and writes dK/dV rows.
  void item(index_t g, index_t k0, float* ws, float* dq_target) const {
    const index_t L = p.L, E = p.E, Ev = p.Ev;
    const index_t nk = std::min(kBC, p.S - k0), kt_tiles = ceil_div(nk, MR);
    Carver c{ws};
    float* ka = c.take(kBC * E);
    float* va = c.take(kBC * Ev);
    float* kt = c.take(e_tiles * MR * kBC);
    float* qp = c.take(NP * E * NR);
    float* dop = c.take(NP * Ev * NR);
    float* qrow = c.take(e_panels * NR * BR);
    float* dorow = c.take(ev_panels * NR * BR);
    float* st = c.take(NP * kBC * NR);
    float* dpt = c.take(NP * kBC * NR);
    float* pa = c.take(kBC * BR);
    float* dsa = c.take(kBC * BR);
    float* tmp = c.take(e_tiles * MR * NR);
    float* dkl = c.take(kBC * E);
    float* dvl = c.take(kBC * Ev);
    float* lv = c.take(BR);
    float* dd = c.take(BR);
    float* qidx = c.take(BR);

    const float* K = p.k.ptr + p.k.off[g];
    const float* Vm = p.v.ptr + p.v.off[g];
    pack_a_rows<MR>(K, p.k.rs, p.k.cs, k0, nk, E, ka);
    pack_a_rows<MR>(Vm, p.v.rs, p.v.cs, k0, nk, Ev, va);
    pack_a_cols<MR>(K, p.k.rs, p.k.cs, k0, nk, E, kBC * MR, kt);
    std::memset(dkl, 0, sizeof(float) * nk * E);
    std::memset(dvl, 0, sizeof(float) * nk * Ev);

    // Causal: queries before the panel holding key k0 see none of these keys.
    const index_t qs = p.causal ? k0 / NR * NR : 0;
    for (index_t r = 0; r < p.group; ++r) {
      const index_t bh = g * p.group + r;
      const float* Q = p.q.ptr + p.q.off[bh];
      const float* dO = p.dout + bh * L * Ev;
      for (index_t q0 = qs; q0 < L; q0 += BR) {
        const index_t nq = std::min(BR, L - q0), np = ceil_div(nq, NR);
        for (index_t jp = 0; jp < np; ++jp) {
          const index_t n = std::min<index_t>(NR, nq - jp * NR);
          pack_rows_transposed<NR>(Q, p.q.rs, p.q.cs, q0 + jp * NR, n, E, qp + jp * E * NR);
          pack_rows_transposed<NR>(dO, Ev, 1, q0 + jp * NR, n, Ev, dop + jp * Ev * NR);
        }
        pack_b_rows<NR>(Q, p.q.rs, p.q.cs, q0, nq, E, NR * BR, qrow);
        pack_b_rows<NR>(dO, Ev, 1, q0, nq, Ev, NR * BR, dorow);
        for (index_t j = 0; j < BR; ++j) {
          const bool ok = j < nq;
          lv[j] = ok ? lsevec[bh * L + q0 + j] : kPosInf;
          dd[j] = ok ? dvec[bh * L + q0 + j] : 0.0f;
          qidx[j] = static_cast<float>(q0 + j);
        }
        for (index_t jp = 0; jp < np; ++jp) {
          const index_t qf = q0 + jp * NR, nqp = std::min<index_t>(NR, nq - jp * NR);
          float* sp = st + jp * kBC * NR;
          float* dp = dpt + jp * kBC * NR;
          for (index_t t = 0; t < kt_tiles; ++t) {
            const int mr = static_cast<int>(std::min<index_t>(MR, nk - t * MR));
            uk(E, ka + t * E * MR, qp + jp * E * NR, sp + t * MR * NR, NR, p.scale, 0.0f, mr, NR);
            uk(Ev, va + t * Ev * MR, dop + jp * Ev * NR, dp + t * MR * NR, NR, 1.0f, 0.0f, mr, NR);
          }
          grads_panel(bh, k0, nk, qf, nqp, sp, dp, lv + jp * NR, dd + jp * NR, qidx + jp * NR);
          // dQ^T (E x NR) = K^T dS^T, then added transposed into the dQ rows.
          for (index_t t = 0; t < e_tiles; ++t)
            uk(nk, kt + t * kBC * MR, dp, tmp + t * MR * NR, NR, 1.0f, 0.0f,
               static_cast<int>(std::min<index_t>(MR, E - t * MR)), NR);
          for (index_t j = 0; j < nqp; ++j) {
            float* dst = dq_target + (bh * L + qf + j) * E;
            for (index_t e = 0; e < E; ++e) dst[e] += tmp[e * NR + j];
          }
        }
        // P^T and dS^T as packed A (MR keys per tile, queries as the contraction).
        for (index_t t = 0; t < kt_tiles; ++t) {
          float* a1 = pa + t * BR * MR;
          float* a2 = dsa + t * BR * MR;
          for (index_t jp = 0; jp < np; ++jp) {
            const float* s1 = st + jp * kBC * NR + t * MR * NR;
            const float* s2 = dpt + jp * kBC * NR + t * MR * NR;
            const index_t nqp = std::min<index_t>(NR, nq - jp * NR);
            for (index_t j = 0; j < nqp; ++j)
              for (index_t i = 0; i < MR; ++i) {
                const bool ok = t * MR + i < nk;
                a1[(jp * NR + j) * MR + i] = ok ? s1[i * NR + j] : 0.0f;
                a2[(jp * NR + j) * MR + i] = ok ? s2[i * NR + j] : 0.0f;
              }
          }
          const int mr = static_cast<int>(std::min<index_t>(MR, nk - t * MR));
          for (index_t te = 0; te < ev_panels; ++te)
            uk(nq, a1, dorow + te * NR * BR, dvl + t * MR * Ev + te * NR, Ev, 1.0f, 1.0f, mr,
               static_cast<int>(std::min<index_t>(NR, Ev - te * NR)));
          for (index_t te = 0; te < e_panels; ++te)
            uk(nq, a2, qrow + te * NR * BR, dkl + t * MR * E + te * NR, E, 1.0f, 1.0f, mr,
               static_cast<int>(std::min<index_t>(NR, E - te * NR)));
        }
      }
    }
    std::memcpy(p.dk + (g * p.S + k0) * E, dkl, sizeof(float) * nk * E);
    std::memcpy(p.dv + (g * p.S + k0) * Ev, dvl, sizeof(float) * nk * Ev);
  }

  // P = exp(S - lse) into sp, dS = P * (dP - D) * scale into dp, over rows [0, nk) of a panel.
  void grads_panel(index_t bh, index_t k0, index_t nk, index_t qf, index_t nq, float* sp, float* dp, const float* lse,
                   const float* d, const float* qidx) const {
    const bool causal = p.causal && k0 + nk - 1 > qf;
    const V ninf = S::set1(kNegInf), sc = S::set1(p.scale);
    V lv[NV], dv[NV], qv[NV];
    for (int v = 0; v < NV; ++v) {
      lv[v] = S::load(lse + v * W);
      dv[v] = S::load(d + v * W);
      qv[v] = S::load(qidx + v * W);
    }
    for (index_t r = 0; r < nk; ++r) {
      float* row = sp + r * NR;
      float* drow = dp + r * NR;
      if (p.mask_kind != MaskKind::none) apply_mask_row(p, bh, qf, nq, k0 + r, row, 1.0f);
      const V key = S::set1(static_cast<float>(k0 + r));
      for (int v = 0; v < NV; ++v) {
        V s = S::load(row + v * W);
        if (causal) s = S::select_gt(key, qv[v], ninf, s);
        const V pr = S::exp(S::sub(s, lv[v]));
        S::store(row + v * W, pr);
        S::store(drow + v * W, S::mul(S::mul(pr, S::sub(S::load(drow + v * W), dv[v])), sc));
      }
    }
  }
};

template <class S>
void backward(const AttentionParams& p) {
  using B = Backward<S>;
  const Ukernel uk = S::ukernel();
  FL_CHECK(uk.mr == S::MR && uk.nr == S::NR, "attention: micro-kernel tile mismatch");
  FL_CHECK(!p.causal || (p.L < (index_t{1} << 24) && p.S < (index_t{1} << 24)),
           "scaled_dot_product_attention_backward: is_causal supports L, S < 2^24");
  const index_t nbh = p.nbh, L = p.L, E = p.E, Ev = p.Ev;
  if (nbh > 0 && L > 0) std::memset(p.dq, 0, sizeof(float) * nbh * L * E);
  if (nbh == 0 || p.S == 0) return;
  const index_t nkv = nbh / p.group;
  if (L == 0) {
    std::memset(p.dk, 0, sizeof(float) * nkv * p.S * E);
    std::memset(p.dv, 0, sizeof(float) * nkv * p.S * Ev);
    return;
  }

  // D = rowsum(dO * O) and the lse with empty rows mapped to +inf: O(nbh * L) floats.
  Buffer rowbuf = alloc_floats(2 * nbh * L);
  float* dvec = rowbuf.get();
  float* lsevec = dvec + nbh * L;
  parallel_for(nbh * L, 1024, [&](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) {
      const float* a = p.dout + i * Ev;
      const float* o = p.o + i * Ev;
      float acc = 0.0f;
      for (index_t j = 0; j < Ev; ++j) acc += a[j] * o[j];
      dvec[i] = acc;
      const float l = p.lse_in[i];
      lsevec[i] = l == kNegInf ? kPosInf : l;
    }
  });

  B b{p, uk.fn, dvec, lsevec, ceil_div(E, S::MR), ceil_div(E, S::NR), ceil_div(Ev, S::NR)};
  const index_t nkb = ceil_div(p.S, kBC);
  const index_t items = nkv * nkb;
  const index_t work = items * kBC * L * (p.E + p.Ev) * static_cast<index_t>(p.group);
  int nt = p.num_threads > 0 ? p.num_threads : threads_for(work, index_t{1} << 18);
  nt = static_cast<int>(std::min<index_t>(nt, items));
  const index_t per = round16(b.workspace_floats());
  Buffer ws = alloc_floats(per * nt);
  // Whole kv heads per thread when they split evenly (or are many): dQ rows then have one
  // writer. Otherwise split the (head, key block) items and give each extra thread a private dQ.
  const bool by_head = nt == 1 || nkv % nt == 0 || nkv >= 4 * nt;
  Buffer priv;
  const index_t dq_size = nbh * L * E;
  if (!by_head) {
    priv = alloc_floats(dq_size * (nt - 1));
    std::memset(priv.get(), 0, sizeof(float) * dq_size * (nt - 1));
  }
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num(), T = omp_get_num_threads();
    float* mine = ws.get() + per * t;
    if (by_head) {
      for (index_t g = nkv * t / T; g < nkv * (t + 1) / T; ++g)
        for (index_t kb = 0; kb < nkb; ++kb) b.item(g, kb * kBC, mine, p.dq);
    } else {
      float* dq = t == 0 ? p.dq : priv.get() + (t - 1) * dq_size;
#pragma omp for schedule(dynamic, 1)
      for (index_t it = 0; it < items; ++it) b.item(it / nkb, (it % nkb) * kBC, mine, dq);
    }
  }
  if (!by_head) {
    parallel_for(dq_size, 1 << 14, [&](index_t b0, index_t e0) {
      for (index_t t = 0; t + 1 < nt; ++t) {
        const float* src = priv.get() + t * dq_size;
        for (index_t i = b0; i < e0; ++i) p.dq[i] += src[i];
      }
    });
  }
}

}  // namespace attn_detail
}  // namespace fl
