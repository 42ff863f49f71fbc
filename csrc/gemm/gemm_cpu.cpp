// The portable GEMM framework: cache blocking, packing and threading (BLIS's five loops).
//
//   for jc in N step nc          B block kc x nc lives in L3, packed once per (jc, pc)
//     for pc in K step kc        (equal k blocks) by the team, in NR-wide micro-panels
//       for ic in M step mc      each thread packs its own mc x kc A block (L2)
//         for jr in nc step NR   the B micro-panel stays in L1 across the ir loop
//           for ir in mc step MR micro-kernel: MR x NR tile in registers
//
// Threads form a tm x tn grid over C (choose_grid). Variants chosen per call, each measured:
// A read in place (small/narrow problems), B panels packed per thread just before use (small
// or transposed B, narrow n), per-thread B blocks without barriers (column splits), B packed
// a few panels at a time next to the compute when a thread has one A block (skinny M), row
// tiles of MR, MR-1 and MR-2 rows (no padded edge tile), B packed a block ahead by the
// micro-kernels themselves when a skinny M meets a B from DRAM (pack_ahead), a streaming
// kernel for M <= 4, and dot products for n == 1 (GEMV; k split across threads when m == 1).
// The epilogue (bias + activation) is applied in the micro-kernel's registers on the last kc
// block, so linear(..., activation) costs no extra pass over C.
#include <omp.h>

#include <algorithm>
#include <cmath>
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

// Threads as a tm x tn grid over C, by a cost in cycles: the largest share of tile-padded
// multiply-adds (16 per cycle) plus the operand traffic each split duplicates (a column
// split makes every thread of a row read/pack all of A, a row split all of B; ~0.3 cycle
// per element). With tm == 1 each thread packs only its own B panels: no barriers at all.
struct Grid {
  int tm, tn;
};
Grid choose_grid(index_t m, index_t n, index_t k, int nt, int mr, int nr) {
  Grid best{nt, 1};
  double best_cost = -1.0;
  for (int tm = 1; tm <= nt; ++tm) {
    if (nt % tm) continue;
    const int tn = nt / tm;
    const double share = static_cast<double>(ceil_div(ceil_div(m, mr), tm) * mr) *
                         static_cast<double>(ceil_div(ceil_div(n, nr), tn) * nr) * static_cast<double>(k) / 16.0;
    const double traffic = 0.3 * (static_cast<double>(m) * k * tn + static_cast<double>(k) * n * tm) / nt;
    if (best_cost < 0 || share + traffic < best_cost) {
      best = {tm, tn};
      best_cost = share + traffic;
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
constexpr index_t kDotGrain = index_t{1} << 18;
constexpr int kMaxDotThreads = 64;
// stream_b's chunk: 8 panels (8 x 16 columns x kc = 256: 128 KiB, in L2; each B row read as a
// 512-byte run). One Zen 3 core, CPU-time ratio to NumPy (loaded machine, +-5%), chunks of
// 4 / 8 / 16 panels: 32 x 2048 x 512 1.03 / 1.05 / 0.97, 16 x 2048 x 512 1.13 / 1.07 / 1.00,
// 64 x 4096 x 4096 0.93 / 0.95 / 0.96, 8 x 4096 x 4096 0.79 / 0.83 / 0.88; 1 panel (64-byte
// runs 8 KiB apart) lost 5% to the whole-block pack on 32 x 2048 x 512.
constexpr index_t kStreamPanels = 8;
constexpr index_t kStreamBBytes = index_t{16} << 20;
// Skinny M with a B beyond kStreamBBytes: a B block of up to 4 MiB (kc = 256: 4096 columns),
// so a row of n = 4096 is packed as one 16 KiB run. One Zen 3 core, packed blocks of 256 rows
// x 3072 (+ 1024) vs x 4096 columns, m x 4096 x 4096 (harness, CPU time, 2 runs each): m = 8
// 33.7 -> 37.2 GFLOP/s, 16 49.8 -> 54.2, 32 65.5 -> 68.5, 64 74.6 -> 77.5.
constexpr index_t kSkinnyBlockBytes = index_t{4} << 20;
constexpr index_t kAheadRowsShared = 32;  // pack_ahead with 2+ threads: rows per thread (below)

// The row tiles of an mc-row block: tile i has rows(i) rows from row offset(i). With the
// short kernels (MR - 1 and MR - 2 rows) an mc that is not a multiple of MR is dealt as
// full tiles then (MR - 1)- and (MR - 2)-row ones, so no tile computes padding rows:
// 32 rows as 6,6,5,5,5,5 instead of six 6-row tiles (the last with 2 useful rows), 1/9 of
// the FMAs of 32 x 2048 x 512 saved (one Zen 3 core, CPU time: +9% alone; +17%, 0.91x ->
// 1.07x NumPy, with the streamed B below, which alone gives +11%). When that needs tiles
// below MR - 2 rows (mc = 1..3 or 7 for MR = 6) or there are no short kernels (generic):
// full tiles and one ragged last tile computed in full.
struct RowTiles {
  index_t count = 0, full = 0, short1 = 0;  // tiles; first `full` have MR rows, then short1 of MR - 1
  int mr = 0, last = 0;                     // last: rows of a ragged last tile (0: none)
  RowTiles(index_t mc, int MR, bool have_short) : mr(MR) {
    count = ceil_div(mc, MR);
    const index_t d = count * MR - mc;  // padding rows of the plain plan
    if (d == 0 || !have_short || d > 2 * count) {
      full = mc / MR;
      short1 = 0;
      last = static_cast<int>(mc - full * MR);
      return;
    }
    const index_t short2 = std::max<index_t>(0, d - count);
    short1 = d - 2 * short2;
    full = count - short1 - short2;
  }
  // Rows of tile i and the first row of tile i; kind: 0 full, 1 MR-1, 2 MR-2, 3 ragged.
  int rows(index_t i) const {
    if (i < full) return mr;
    if (last) return last;
    return i < full + short1 ? mr - 1 : mr - 2;
  }
  int kind(index_t i) const { return i < full ? 0 : (last ? 3 : (i < full + short1 ? 1 : 2)); }
  index_t offset(index_t i) const {
    return i * mr - std::max<index_t>(0, i - full) - std::max<index_t>(0, i - full - short1);
  }
};

// Thread t of T: its tile of the grid (see gemm_blocked).
void blocked_worker(const GemmParams& p, const Ukernel& uk, float* b_pack, index_t nc_max, bool any_epi, int t, int T) {
  const int MR = uk.mr, NR = uk.nr;
  // k split into equal blocks of at most uk.kc: k = 257 ran a whole second pass over C with
  // kc = 1 (513 x 1025 x 257: 0.90x -> 1.02x NumPy with 129 + 128).
  const index_t KC = ceil_div(p.k, ceil_div(p.k, uk.kc));
  const Grid g = choose_grid(p.m, p.n, p.k, T, MR, NR);
  const int ti = t / g.tn, tj = t % g.tn;
  const index_t r0 = split_at(p.m, g.tm, ti, MR), r1 = split_at(p.m, g.tm, ti + 1, MR);
  const index_t c0 = split_at(p.n, g.tn, tj, NR), c1 = split_at(p.n, g.tn, tj + 1, NR);
  const index_t rows_max = ceil_div(ceil_div(p.m, MR), g.tm) * MR;
  const index_t cols_max = ceil_div(ceil_div(p.n, NR), g.tn) * NR;
  const bool a_fits =
      cols_max <= kDirectACols || rows_max * p.k * static_cast<index_t>(sizeof(float)) <= kDirectABytes;
  const index_t MC = round_up(std::min<index_t>(uk.mc, rows_max), MR);
  const bool have_short = uk.fn_ex_short[0][0] != nullptr;
  // Each thread packs each of its B panels right before use into an L1 buffer (no shared B
  // block, no barriers) for small problems (one A block per thread, all of B within L2:
  // 128^3 +4%) and for narrow B (n <= 64: a panel's rows are then at most 256 bytes apart,
  // read densely; 4096 x 64 x 4096 needs no barrier). Not for wide B beyond L2: a lone
  // panel is read 64 bytes per row at a stride of n, which DRAM and L3 serve poorly
  // (32 x 2048 x 512: -10%), unlike pack_b_rows over whole rows.
  // Likewise for a transposed B (b_rs == 1, e.g. linear's weight.T) feeding one A block:
  // its panel is 16 contiguous runs of kc floats, and packing it next to the compute lets
  // the weight stream from DRAM under the FMAs (linear 32 x 4096 -> 4096: +7%).
  const bool jit_b = (rows_max <= uk.mc && p.k * p.n * static_cast<index_t>(sizeof(float)) <= kJitBBytes) ||
                     (rows_max <= uk.mc && p.b_rs == 1) || p.n <= kDirectACols;
  const bool own_b = g.tm == 1;  // each thread uses only its own B columns
  // stream_b: own B panels feeding a single A block (this thread's rows fit one mc block), so
  // a packed panel is used by that block alone: pack kStreamPanels panels at a time, row by
  // row, and compute on them while they are in L1/L2, instead of packing the whole kc x nc
  // block (2 MiB for 32 x 2048 x 512) out to L3 and reading it back. Only for a B within half
  // of L3 (16 MiB): beyond, B comes from DRAM, where the whole-block pack's long row runs
  // (12 KiB) suit the prefetchers better than 512-byte runs, most of all with both cores
  // streaming (64 x 4096 x 4096 on one core: no gain; two threads unmeasurable on the loaded
  // machine, so the old route is kept there). Beyond: pack_ahead below. (pack_ahead in place
  // of stream_b, one core: 64 / 32 / 16 x 2048 x 512 1.01 / 1.00 / 0.98x, 8 x 2048 x 512 0.85x.)
  const bool stream_b =
      own_b && !jit_b && r1 - r0 <= MC && p.k * p.n * static_cast<index_t>(sizeof(float)) <= kStreamBBytes;
  // B blocks (jc loop) of NC columns. Skinny M on its own B columns beyond stream_b (a B from
  // DRAM, each packed block feeding one A block): blocks of up to kSkinnyBlockBytes spanning the
  // thread's columns [c0, c1) in equal parts, not nc-wide blocks from column 0, so B's rows are
  // read in runs as long as possible (n = 4096: one 16 KiB run, not 12 KiB + 4 KiB).
  const bool skinny = own_b && !jit_b && !stream_b && r1 - r0 <= MC && c0 < c1;
  index_t NC = round_up(uk.nc, NR), jc_begin = 0, jc_end = p.n;
  if (skinny) {
    const index_t cap = std::max(NC, kSkinnyBlockBytes / (KC * static_cast<index_t>(sizeof(float))) / NR * NR);
    NC = round_up(ceil_div(c1 - c0, ceil_div(c1 - c0, cap)), NR);
    jc_begin = c0;
    jc_end = c1;
  }
  // pack_ahead (skinny, B rows contiguous): the micro-kernels computing on B block i copy block
  // i+1 into a second buffer as a side job (SideCopy, ukernel.h), row by row in long runs, so B
  // streams from DRAM under the FMAs instead of in a pass of its own between the blocks (the
  // pack was ~40% of 16 x 4096 x 4096 on one core). The first block, and a block after one
  // that applies the epilogue (its kernels have no side copy), are packed the plain way.
  // With several threads each streams its share of B at once, at a fraction of the bandwidth
  // one core gets: the side copies then stall the FMAs they should hide under unless a thread
  // has enough rows of arithmetic per B element (2 threads, m x 4096 x 4096, vs the plain pack,
  // interleaved, wall time, best of 11 rounds: m = 8 0.86x, 16 0.96x, 32 1.05x, 64 1.07x).
  const bool pack_ahead =
      skinny && p.b_cs == 1 && uk.fn_copy[0] != nullptr && (T == 1 || r1 - r0 >= kAheadRowsShared);
  const bool direct_a = a_fits && !pack_ahead;  // (the side-copy kernels read a packed A)
  const index_t own_cols = stream_b ? kStreamPanels * NR : std::min(NC, round_up(c1 - c0, NR));
  float* a_pack = thread_scratch_a(MC * KC + 8 + KC * NR);  // + 8: pack_a's store slack
  float* b_local = a_pack + MC * KC + 8;
  // own_b: this thread's B panels of one (jc, pc) block, in a buffer of its own (two for pack_ahead).
  float* own_buf = own_b && !jit_b ? thread_scratch_b((pack_ahead ? 2 : 1) * KC * own_cols) : nullptr;
  auto pack_panel = [&](index_t pc, index_t kc, index_t j0, int cols, float* dst) {
    const float* src = p.b + pc * p.b_rs + j0 * p.b_cs;
    if (uk.pack_b) {
      uk.pack_b(src, p.b_rs, p.b_cs, kc, cols, dst);
    } else {
      pack_b_panel(src, p.b_rs, p.b_cs, kc, cols, NR, dst);
    }
  };
  // Panels [jp0, jp1) of the block at columns jc.. (nc wide), panel jp to dst(jp).
  auto pack_panels = [&](index_t pc, index_t kc, index_t jc, index_t nc, index_t jp0, index_t jp1, auto dst) {
    index_t jp = jp0;
    if (uk.pack_b_rows && p.b_cs == 1) {
      const index_t full = std::min(jp1, nc / NR) - jp0;  // whole panels in this share
      if (full > 0) uk.pack_b_rows(p.b + pc * p.b_rs + jc + jp0 * NR, p.b_rs, kc, full, dst(jp0));
      jp += std::max<index_t>(full, 0);
    }
    for (; jp < jp1; ++jp)
      pack_panel(pc, kc, jc + jp * NR, static_cast<int>(std::min<index_t>(NR, nc - jp * NR)), dst(jp));
  };
  // The A block of rows [ic, ic + mc) at k offset pc: packed (tile i's panel at a_pack + i kc MR).
  auto pack_a_block = [&](const RowTiles& rt, const float* a_blk, index_t mc, index_t kc) {
    if (direct_a) return;
    if (rt.full + (rt.last ? 1 : 0) == rt.count) {  // MR-row panels throughout
      if (uk.pack_a) {
        uk.pack_a(a_blk, p.a_rs, p.a_cs, mc, kc, a_pack);
      } else {
        pack_a(a_blk, p.a_rs, p.a_cs, mc, kc, MR, a_pack);
      }
      return;
    }
    for (index_t i = 0; i < rt.count; ++i) {  // short tiles: one panel each, MR floats per k
      const float* src = a_blk + rt.offset(i) * p.a_rs;
      if (uk.pack_a) {
        uk.pack_a(src, p.a_rs, p.a_cs, rt.rows(i), kc, a_pack + i * kc * MR);
      } else {
        pack_a(src, p.a_rs, p.a_cs, rt.rows(i), kc, MR, a_pack + i * kc * MR);
      }
    }
  };
  // Every row tile of the block against one B panel (bp, NR floats per k) at column j0.
  auto compute_panel = [&](const RowTiles& rt, index_t ic, const float* a_blk, index_t kc, const float* bp, index_t j0,
                           int nr, float beta, int fi) {
    for (index_t i = 0; i < rt.count; ++i) {
      const index_t i0 = rt.offset(i);
      const int mr = rt.rows(i), kind = rt.kind(i);
      float* ct = p.c + (ic + i0) * p.ldc + j0;
      const TileEpilogue e{p.row_bias ? p.row_bias + ic + i0 : nullptr, p.col_bias ? p.col_bias + j0 : nullptr,
                           p.act};
      const TileEpilogue* ep = fi ? &e : nullptr;
      if (direct_a) {
        const UkernelExFn f = kind == 1 || kind == 2 ? uk.fn_ex_strided_short[kind - 1][fi] : uk.fn_ex_strided[fi];
        f(kc, a_blk + i0 * p.a_rs, p.a_rs, p.a_cs, bp, NR, ct, p.ldc, p.alpha, beta, mr, nr, ep);
      } else {
        const UkernelExFn f = kind == 1 || kind == 2 ? uk.fn_ex_short[kind - 1][fi] : uk.fn_ex[fi];
        f(kc, a_pack + i * kc * MR, 1, MR, bp, NR, ct, p.ldc, p.alpha, beta, mr, nr, ep);
      }
    }
  };
  int step = 0;
  bool ahead_ready = false;  // pack_ahead: the block about to start was packed by the previous one
  for (index_t jc = jc_begin; jc < jc_end; jc += NC) {
    const index_t nc = std::min(NC, jc_end - jc);
    const index_t jr_panels = ceil_div(nc, NR);
    for (index_t pc = 0; pc < p.k; pc += KC) {
      const index_t kc = std::min(KC, p.k - pc);
      const bool last_k = pc + kc == p.k;
      const float beta = pc == 0 ? p.beta : 1.0f;
      const int fi = last_k && any_epi ? 1 + static_cast<int>(p.act) : 0;
      const index_t j_lo = std::max(c0, jc), j_hi = std::min(c1, jc + nc);
      if (stream_b) {
        if (j_lo >= j_hi || r0 >= r1) continue;
        const index_t mc = r1 - r0;
        const RowTiles rt(mc, MR, have_short);
        const float* a_blk = p.a + r0 * p.a_rs + pc * p.a_cs;
        pack_a_block(rt, a_blk, mc, kc);
        const index_t G = kStreamPanels;
        const index_t jp_lo = (j_lo - jc) / NR, jp_hi = ceil_div(j_hi - jc, NR);
        for (index_t q0 = jp_lo; q0 < jp_hi; q0 += G) {
          const index_t q1 = std::min(jp_hi, q0 + G);
          pack_panels(pc, kc, jc, nc, q0, q1, [&](index_t jp) { return own_buf + (jp - q0) * NR * kc; });
          for (index_t jp = q0; jp < q1; ++jp) {
            const index_t j0 = jc + jp * NR;
            compute_panel(rt, r0, a_blk, kc, own_buf + (jp - q0) * NR * kc, j0,
                          static_cast<int>(std::min<index_t>(NR, j_hi - j0)), beta, fi);
          }
        }
        continue;
      }
      if (pack_ahead) {
        float* cur = own_buf + (step & 1) * KC * own_cols;
        float* nxt = own_buf + ((step + 1) & 1) * KC * own_cols;
        ++step;
        if (!ahead_ready)
          pack_panels(pc, kc, jc, nc, 0, jr_panels, [&](index_t jp) { return cur + jp * NR * kc; });
        // The next block of this thread: (jc, pc + kc) or the first k block of the next columns.
        index_t njc = jc, npc = pc + kc;
        if (npc >= p.k) {
          npc = 0;
          njc = jc + NC;
        }
        const bool has_next = njc < jc_end && fi == 0;
        const index_t nkc = has_next ? std::min(KC, p.k - npc) : 0;
        const index_t nnc = has_next ? std::min(NC, jc_end - njc) : 0, nfull = nnc / NR;
        const index_t mc = r1 - r0;
        const RowTiles rt(mc, MR, have_short);
        const float* a_blk = p.a + r0 * p.a_rs + pc * p.a_cs;
        pack_a_block(rt, a_blk, mc, kc);
        // The next block's full panels, kc x nfull runs of NR floats, dealt evenly to the tiles.
        const index_t total = nkc * nfull, calls = jr_panels * rt.count;
        const float* nsrc = p.b + npc * p.b_rs + njc;
        index_t done = 0, call = 0;
        for (index_t jp = 0; jp < jr_panels; ++jp) {
          const index_t j0 = jc + jp * NR;
          const int nr = static_cast<int>(std::min<index_t>(NR, jc + nc - j0));
          const float* bp = cur + jp * NR * kc;
          if (!has_next) {
            compute_panel(rt, r0, a_blk, kc, bp, j0, nr, beta, fi);
            continue;
          }
          for (index_t i = 0; i < rt.count; ++i, ++call) {
            const index_t upto = total * (call + 1) / calls;
            const index_t row = nfull ? done / nfull : 0, col = nfull ? done % nfull : 0;
            const SideCopy cp{nsrc + row * p.b_rs + col * NR, p.b_rs, nxt + col * nkc * NR + row * NR, nkc * NR,
                              nfull, col, upto - done};
            const int kind = rt.kind(i);
            float* ct = p.c + (r0 + rt.offset(i)) * p.ldc + j0;
            uk.fn_copy[kind == 1 || kind == 2 ? kind : 0](kc, a_pack + i * kc * MR, bp, ct, p.ldc, p.alpha, beta,
                                                          rt.rows(i), nr, cp);
            done = upto;
          }
        }
        if (has_next && nnc % NR)  // the next block's ragged last panel (n not a multiple of NR)
          pack_panel(npc, nkc, njc + nfull * NR, static_cast<int>(nnc % NR), nxt + nfull * NR * nkc);
        ahead_ready = has_next;
        continue;
      }
      // The packed B block: panel of column j starts at blk + (j - blk_j0) * kc.
      float* blk = b_pack + (step++ & 1) * KC * nc_max;
      index_t blk_j0 = jc;
      if (!jit_b) {
        // Team packing: a share of the block each, then a barrier. own_b: this thread's columns
        // into its own buffer (threads drift apart without barriers, so no shared buffer).
        index_t jp0 = jr_panels * t / T, jp1 = jr_panels * (t + 1) / T;
        if (own_b) {
          jp0 = std::min(jr_panels, (std::max(c0, jc) - jc) / NR);
          jp1 = std::max(jp0, ceil_div(std::max(std::min(c1, jc + nc) - jc, index_t{0}), NR));
          blk = own_buf;  // panel jp0 first
          blk_j0 = jc + jp0 * NR;
        }
        pack_panels(pc, kc, jc, nc, jp0, jp1, [&](index_t jp) { return blk + (jc + jp * NR - blk_j0) * kc; });
        if (!own_b && T > 1) {  // (T == 1 always has own_b: never a barrier outside a team)
#pragma omp barrier
        }
      }
      if (j_lo >= j_hi || r0 >= r1) continue;
      for (index_t ic = r0; ic < r1; ic += MC) {
        const index_t mc = std::min(MC, r1 - ic);
        const RowTiles rt(mc, MR, have_short);
        const float* a_blk = p.a + ic * p.a_rs + pc * p.a_cs;
        pack_a_block(rt, a_blk, mc, kc);
        for (index_t j0 = j_lo; j0 < j_hi; j0 += NR) {
          const int nr = static_cast<int>(std::min<index_t>(NR, j_hi - j0));
          const float* bp = blk + (j0 - blk_j0) * kc;
          if (jit_b) {
            pack_panel(pc, kc, j0, nr, b_local);
            bp = b_local;
          }
          compute_panel(rt, ic, a_blk, kc, bp, j0, nr, beta, fi);
        }
      }
    }
  }
}

void gemm_blocked(const GemmParams& p, const Ukernel& uk, int nt) {
  const int NR = uk.nr;
  const index_t KC = uk.kc, NC = round_up(uk.nc, NR);
  const index_t nc_max = std::min<index_t>(NC, round_up(p.n, NR));
  const bool any_epi = p.row_bias || p.col_bias || p.act != Activation::none;
  // Two B blocks: block i is packed while slow threads may still compute on block i-1, so one
  // barrier per (jc, pc) step suffices (packing i+1 reuses buffer i-1 only after every thread
  // passed barrier i, i.e. finished computing on i-1).
  float* b_pack = thread_scratch_b(2 * KC * nc_max);

  // One thread: no OpenMP region at all (~1 us a call, 5% of a 128 x 128 x 64 GEMM in a batch).
  if (nt <= 1) return blocked_worker(p, uk, b_pack, nc_max, any_epi, 0, 1);
#pragma omp parallel num_threads(nt)
  blocked_worker(p, uk, b_pack, nc_max, any_epi, omp_get_thread_num(), omp_get_num_threads());
}

// M <= 4 rows: threads split the columns (in whole 64-byte lines), each streams its B slice.
void gemm_small_m(const GemmParams& p, SmallMFn fn, int nt) {
  if (nt <= 1) return fn(p, 0, p.n);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int T = omp_get_num_threads(), t = omp_get_thread_num();
    const index_t j0 = split_at(p.n, T, t, 16), j1 = split_at(p.n, T, t + 1, 16);
    if (j0 < j1) fn(p, j0, j1);
  }
}

// n == 1 with A's rows and B's column contiguous: a GEMV, each row a dot product of length k
// (the 6 x 16 tile would compute 16 columns for 1). m == 1 too: one dot product, k split
// across the threads (memory-bound: each core streams its half) and the partial sums added
// in thread order, so a result depends on the thread count only.
void gemm_gemv(const GemmParams& p, const Ukernel& uk, int nt) {
  if (p.m == 1) {
    // Below ~256 Ki multiply-adds (2 MiB read) a second thread costs more than it saves.
    const int T = p.num_threads > 0 && !omp_in_parallel() ? std::min<index_t>(p.num_threads, p.k / kDotGrain + 1)
                                                         : threads_for(p.k, kDotGrain);
    float part[kMaxDotThreads];
    const int parts = std::min(T, kMaxDotThreads);
    if (parts <= 1) {
      part[0] = uk.dot(p.a, p.b, p.k);
    } else {
#pragma omp parallel num_threads(parts)
      {
        const int t = omp_get_thread_num(), TT = omp_get_num_threads();
        // Chunks of whole 64-byte lines (16 floats), so no line is read by two threads.
        const index_t q0 = split_at(p.k, TT, t, 16), q1 = split_at(p.k, TT, t + 1, 16);
        part[t] = q0 < q1 ? uk.dot(p.a + q0, p.b + q0, q1 - q0) : 0.0f;
        if (TT < parts && t == 0)
          for (int u = TT; u < parts; ++u) part[u] = 0.0f;
      }
    }
    float s = 0.0f;
    for (int u = 0; u < parts; ++u) s += part[u];
    float r = s * p.alpha;
    if (p.beta != 0.0f) r = std::fma(p.c[0], p.beta, r);
    p.c[0] = r;
    apply_epilogue(p.c, p.ldc, 1, 1, p.row_bias, p.col_bias, p.act);
    return;
  }
  auto rows = [&](index_t i0, index_t i1) {
    uk.gemv(p, i0, i1);
    apply_epilogue(p.c + i0 * p.ldc, p.ldc, i1 - i0, 1, p.row_bias ? p.row_bias + i0 : nullptr, p.col_bias, p.act);
  };
  if (nt <= 1) return rows(0, p.m);
#pragma omp parallel num_threads(nt)
  {
    const int T = omp_get_num_threads(), t = omp_get_thread_num();
    const index_t i0 = split_at(p.m, T, t, 4), i1 = split_at(p.m, T, t + 1, 4);
    if (i0 < i1) rows(i0, i1);
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
  if (p.n == 1 && p.a_cs == 1 && p.b_rs == 1 && uk.gemv) {
    gemm_gemv(p, uk, nt);
    return;
  }
  if (p.n == 1 && p.a_rs == 1 && p.ldc == 1 && uk.small_m[0]) {
    // A column-major (a.T): C^T = B^T A^T, one row against a B with contiguous rows.
    GemmParams q = p;
    q.m = 1;
    q.n = p.m;
    q.a = p.b;
    q.a_rs = 0;
    q.a_cs = p.b_rs;
    q.b = p.a;
    q.b_rs = p.a_cs;
    q.b_cs = 1;
    q.row_bias = p.col_bias;
    q.col_bias = p.row_bias;
    gemm_small_m(q, uk.small_m[0], nt);
    return;
  }
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
