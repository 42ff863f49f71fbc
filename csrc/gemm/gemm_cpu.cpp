// The portable GEMM framework: cache blocking, packing and threading (BLIS's five loops).
//
//   for jc in N step nc          B block kc x nc lives in L3, packed once per (jc, pc)
//     for pc in K step kc        by the whole team, in NR-wide micro-panels
//       for ic in M step mc      each thread packs its own mc x kc A block (L2)
//         for jr in nc step NR   the B micro-panel stays in L1 across the ir loop
//           for ir in mc step MR micro-kernel: MR x NR tile in registers
//
// The epilogue (bias + activation) runs on each tile right after its last kc block, while
// the tile is still in L1, so linear(..., activation) costs no extra pass over C.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/parallel.h"
#include "elementwise/elementwise_isa.h"
#include "gemm/gemm.h"
#include "gemm/ukernel.h"

namespace fl {
namespace {

index_t round_up(index_t x, index_t m) { return (x + m - 1) / m * m; }
index_t ceil_div(index_t x, index_t m) { return (x + m - 1) / m; }

// A grow-only 64-byte-aligned scratch buffer, one per thread (OpenMP keeps its threads,
// so the buffers survive between calls and large GEMMs do not page-fault every time).
struct Scratch {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> data;
  index_t size = 0;
  float* get(index_t n) {
    if (n > size) {
      const index_t bytes = round_up(n * static_cast<index_t>(sizeof(float)), 64);
      data.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
      if (!data) throw std::bad_alloc();
      size = n;
    }
    return data.get();
  }
};

float* thread_scratch_a(index_t n) {
  thread_local Scratch s;
  return s.get(n);
}
float* thread_scratch_b(index_t n) {
  thread_local Scratch s;
  return s.get(n);
}

// Pack rows [0, mc) x cols [0, kc) of A (strided) into MR-row micro-panels, zero-padded.
void pack_a(const float* a, index_t rs, index_t cs, index_t mc, index_t kc, int mr_tile, float* dst) {
  for (index_t i0 = 0; i0 < mc; i0 += mr_tile) {
    const int rows = static_cast<int>(std::min<index_t>(mr_tile, mc - i0));
    const float* src = a + i0 * rs;
    if (cs == 1) {
      for (index_t p = 0; p < kc; ++p) {
        for (int i = 0; i < rows; ++i) dst[p * mr_tile + i] = src[i * rs + p];
        for (int i = rows; i < mr_tile; ++i) dst[p * mr_tile + i] = 0.0f;
      }
    } else {
      for (index_t p = 0; p < kc; ++p) {
        const float* col = src + p * cs;
        for (int i = 0; i < rows; ++i) dst[p * mr_tile + i] = col[i * rs];
        for (int i = rows; i < mr_tile; ++i) dst[p * mr_tile + i] = 0.0f;
      }
    }
    dst += kc * mr_tile;
  }
}

// Pack one NR-column micro-panel of B (kc x cols, strided), zero-padded to NR.
void pack_b_panel(const float* b, index_t rs, index_t cs, index_t kc, int cols, int nr_tile, float* dst) {
  if (cs == 1 && cols == nr_tile) {
    for (index_t p = 0; p < kc; ++p) std::memcpy(dst + p * nr_tile, b + p * rs, sizeof(float) * nr_tile);
    return;
  }
  for (index_t p = 0; p < kc; ++p) {
    const float* row = b + p * rs;
    float* out = dst + p * nr_tile;
    for (int j = 0; j < cols; ++j) out[j] = row[j * cs];
    for (int j = cols; j < nr_tile; ++j) out[j] = 0.0f;
  }
}

// C = beta * C (k == 0 or alpha == 0): no product to compute, only scaling and epilogue.
void scale_c(const GemmParams& p) {
  for (index_t i = 0; i < p.m; ++i) {
    float* row = p.c + i * p.ldc;
    if (p.beta == 0.0f) {
      std::fill(row, row + p.n, 0.0f);
    } else if (p.beta != 1.0f) {
      for (index_t j = 0; j < p.n; ++j) row[j] *= p.beta;
    }
  }
  apply_epilogue(p.c, p.ldc, p.m, p.n, p.row_bias, p.col_bias, p.act);
}

int choose_threads(const GemmParams& p) {
  if (p.num_threads > 0) return omp_in_parallel() ? 1 : p.num_threads;
  // Below ~2 MFLOP per thread the fork/join and shared packing cost more than they save.
  return threads_for(p.m * p.n * p.k, index_t{1} << 20);
}

// Split [0, n) into `parts` ranges whose starts are multiples of `align`; range i is
// [split_at(i), split_at(i + 1)). Aligning to the register tile keeps edge tiles to one per
// thread, and the ranges differ by at most one tile, so no thread waits on a bigger share
// (144-row blocks dealt round-robin left 1024 rows split 576/448: 11% idle).
index_t split_at(index_t n, int parts, int i, index_t align) {
  if (i >= parts) return n;
  return std::min(n, ceil_div(n, align) * i / parts * align);
}

// Threads as a tm x tn grid over C: the split whose largest share (in whole tiles) is
// smallest; ties go to splitting rows, which keeps each thread's B panels shared and A
// packed once (a column split packs the same A block in every thread of a row).
struct Grid {
  int tm, tn;
};
Grid choose_grid(index_t m, index_t n, int nt, int mr, int nr) {
  Grid best{nt, 1};
  index_t best_cost = -1;
  for (int tm = nt; tm >= 1; --tm) {
    if (nt % tm) continue;
    const int tn = nt / tm;
    const index_t cost = ceil_div(ceil_div(m, mr), tm) * mr * (ceil_div(ceil_div(n, nr), tn) * nr);
    if (best_cost < 0 || cost < best_cost) {
      best = {tm, tn};
      best_cost = cost;
    }
  }
  return best;
}

// A read in place (no packing) when packing would not pay: a thread's columns span at most
// 64 (each A block then feeds at most 4 micro-panels of B, e.g. 4096 x 64 outputs), or its
// A rows fit in ~3/4 of L2 (384 KiB) so they stay cached across the whole GEMM. Measured on
// the Zen 3 box: 128^3 0.70x -> 0.80x NumPy, 256^3 0.89x -> 0.95x; 1024^3 loses ~3% with
// A in place (six strided row streams instead of one), hence the L2 limit.
constexpr index_t kDirectACols = 64;
constexpr index_t kDirectABytes = index_t{384} << 10;
constexpr index_t kJitBBytes = index_t{512} << 10;

void gemm_blocked(const GemmParams& p, const Ukernel& uk, int nt) {
  const int MR = uk.mr, NR = uk.nr;
  const index_t KC = uk.kc, NC = round_up(uk.nc, NR);
  const index_t nc_max = std::min<index_t>(NC, round_up(p.n, NR));
  const bool any_epi = p.row_bias || p.col_bias || p.act != Activation::none;
  // Two B blocks: block i is packed while slow threads may still compute on block i-1, so one
  // barrier per (jc, pc) step suffices (packing i+1 reuses buffer i-1 only after every thread
  // passed barrier i, i.e. finished computing on i-1).
  float* b_pack = thread_scratch_b(2 * KC * nc_max);

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int T = omp_get_num_threads(), t = omp_get_thread_num();
    const Grid g = choose_grid(p.m, p.n, T, MR, NR);
    const int ti = t / g.tn, tj = t % g.tn;
    const index_t r0 = split_at(p.m, g.tm, ti, MR), r1 = split_at(p.m, g.tm, ti + 1, MR);
    const index_t c0 = split_at(p.n, g.tn, tj, NR), c1 = split_at(p.n, g.tn, tj + 1, NR);
    const index_t rows_max = ceil_div(ceil_div(p.m, MR), g.tm) * MR;
    const index_t cols_max = ceil_div(ceil_div(p.n, NR), g.tn) * NR;
    const bool direct_a =
        cols_max <= kDirectACols || rows_max * p.k * static_cast<index_t>(sizeof(float)) <= kDirectABytes;
    const index_t MC = round_up(std::min<index_t>(uk.mc, rows_max), MR);
    // Small problems (one A block per thread, all of B within L2): each thread packs each of
    // its B panels right before use into an L1 buffer; no shared B block, no barriers
    // (128^3: +4%). Not for B beyond L2: a lone panel is read 64 bytes per row at a stride
    // of n, which DRAM and L3 serve poorly (32 x 2048 x 512: -10%), unlike pack_b_rows.
    const bool jit_b = rows_max <= uk.mc && p.k * p.n * static_cast<index_t>(sizeof(float)) <= kJitBBytes;
    float* a_pack = thread_scratch_a(MC * KC + 8 + KC * NR);  // + 8: pack_a's store slack
    float* b_local = a_pack + MC * KC + 8;
    auto pack_panel = [&](index_t pc, index_t kc, index_t j0, int cols, float* dst) {
      const float* src = p.b + pc * p.b_rs + j0 * p.b_cs;
      if (uk.pack_b) {
        uk.pack_b(src, p.b_rs, p.b_cs, kc, cols, dst);
      } else {
        pack_b_panel(src, p.b_rs, p.b_cs, kc, cols, NR, dst);
      }
    };
    int step = 0;
    for (index_t jc = 0; jc < p.n; jc += NC) {
      const index_t nc = std::min(NC, p.n - jc);
      const index_t jr_panels = ceil_div(nc, NR);
      for (index_t pc = 0; pc < p.k; pc += KC) {
        const index_t kc = std::min(KC, p.k - pc);
        const bool last_k = pc + kc == p.k;
        const float beta = pc == 0 ? p.beta : 1.0f;
        float* bbuf = b_pack + (step++ & 1) * KC * nc_max;
        if (!jit_b) {
          const index_t jp0 = jr_panels * t / T, jp1 = jr_panels * (t + 1) / T;
          index_t jp = jp0;
          if (uk.pack_b_rows && p.b_cs == 1) {
            const index_t full = std::min(jp1, nc / NR) - jp0;  // whole panels in this share
            if (full > 0) uk.pack_b_rows(p.b + pc * p.b_rs + jc + jp0 * NR, p.b_rs, kc, full, bbuf + jp0 * kc * NR);
            jp += std::max<index_t>(full, 0);
          }
          for (; jp < jp1; ++jp)
            pack_panel(pc, kc, jc + jp * NR, static_cast<int>(std::min<index_t>(NR, nc - jp * NR)), bbuf + jp * kc * NR);
#pragma omp barrier
        }
        const index_t j_lo = std::max(c0, jc), j_hi = std::min(c1, jc + nc);
        if (j_lo >= j_hi || r0 >= r1) continue;
        for (index_t ic = r0; ic < r1; ic += MC) {
          const index_t mc = std::min(MC, r1 - ic);
          const float* a_blk = p.a + ic * p.a_rs + pc * p.a_cs;
          if (!direct_a) {
            if (uk.pack_a) {
              uk.pack_a(a_blk, p.a_rs, p.a_cs, mc, kc, a_pack);
            } else {
              pack_a(a_blk, p.a_rs, p.a_cs, mc, kc, MR, a_pack);
            }
          }
          for (index_t j0 = j_lo; j0 < j_hi; j0 += NR) {
            const int nr = static_cast<int>(std::min<index_t>(NR, j_hi - j0));
            const float* bp = bbuf + (j0 - jc) * kc;
            if (jit_b) {
              pack_panel(pc, kc, j0, nr, b_local);
              bp = b_local;
            }
            const index_t ldb = NR;
            for (index_t i0 = 0; i0 < mc; i0 += MR) {
              const int mr = static_cast<int>(std::min<index_t>(MR, mc - i0));
              float* ct = p.c + (ic + i0) * p.ldc + j0;
              const TileEpilogue e{p.row_bias ? p.row_bias + ic + i0 : nullptr, p.col_bias ? p.col_bias + j0 : nullptr,
                                   p.act};
              const int fi = last_k && any_epi ? 1 + static_cast<int>(p.act) : 0;
              const TileEpilogue* ep = fi ? &e : nullptr;
              if (direct_a) {
                uk.fn_ex_strided[fi](kc, a_blk + i0 * p.a_rs, p.a_rs, p.a_cs, bp, ldb, ct, p.ldc, p.alpha, beta, mr, nr,
                                 ep);
              } else {
                uk.fn_ex[fi](kc, a_pack + i0 * kc, 1, MR, bp, ldb, ct, p.ldc, p.alpha, beta, mr, nr, ep);
              }
            }
          }
        }
      }
    }
  }
}

// M <= 4 rows: threads split the columns (in whole 64-byte lines), each streams its B slice.
void gemm_small_m(const GemmParams& p, SmallMFn fn, int nt) {
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int T = omp_get_num_threads(), t = omp_get_thread_num();
    const index_t j0 = split_at(p.n, T, t, 16), j1 = split_at(p.n, T, t + 1, 16);
    if (j0 < j1) fn(p, j0, j1);
  }
}

}  // namespace

void apply_epilogue(float* c, index_t ldc, index_t m, index_t n, const float* row_bias,
                    const float* col_bias, Activation act) {
  if (m <= 0 || n <= 0 || (!row_bias && !col_bias && act == Activation::none)) return;
  elementwise_for(active_isa()).epilogue(c, ldc, m, n, row_bias, col_bias, act);
}

void run_gemm(const GemmParams& p) {
  FL_CHECK(p.m >= 0 && p.n >= 0 && p.k >= 0, "gemm: negative size m=", p.m, " n=", p.n, " k=", p.k);
  if (p.m == 0 || p.n == 0) return;
  if (p.k == 0 || p.alpha == 0.0f) {
    scale_c(p);
    return;
  }
  const Ukernel uk = ukernel_for(active_isa());
  const int nt = choose_threads(p);
  if (p.m <= 4 && p.b_cs == 1 && uk.small_m[p.m - 1]) {
    gemm_small_m(p, uk.small_m[p.m - 1], nt);
    return;
  }
  gemm_blocked(p, uk, nt);
}

void run_gemm_batched(const GemmParams& p, index_t batch, index_t a_bs, index_t b_bs, index_t c_bs) {
  if (batch <= 0) return;
  const index_t flops_each = p.m * p.n * p.k;
  const int nt = threads_for(batch * flops_each, index_t{1} << 20);
  // One GEMM big enough for all threads: run them one after another, each threaded.
  if (nt <= 1 || flops_each >= (index_t{1} << 22) * nt) {
    for (index_t i = 0; i < batch; ++i) {
      GemmParams q = p;
      q.a += i * a_bs;
      q.b += i * b_bs;
      q.c += i * c_bs;
      run_gemm(q);
    }
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (index_t i = 0; i < batch; ++i) {
    GemmParams q = p;
    q.a += i * a_bs;
    q.b += i * b_bs;
    q.c += i * c_bs;
    q.num_threads = 1;
    run_gemm(q);
  }
}

}  // namespace fl
