// conv2d forward: implicit im2col straight into the GEMM micro-kernel's packed B panels.
//
// Per group, Y_g (Kg x pixels) = W_g (Kg x Kc) * col_g (Kc x pixels), Kc = C/groups * R * S.
// The GEMM framework (gemm_cpu.cpp) would pack B from an explicit im2col buffer: one write and
// one re-read of every column element more than needed. Here the loops of BLIS are written
// once more around the same micro-kernel (gemm/ukernel.h) and B is gathered from the image
// directly into kc x NR panels. Version history, single thread, batch 1, 64x56x56 3x3
// (process CPU time, this 2-core EPYC):
//   v1 chunked im2col (Kc x 448 buffer) + run_gemm:        62-66 GFLOP/s (PyTorch/oneDNN 85-88)
//   v2 this file: implicit im2col into packed panels, A packed once per call.
//
// Tiles: a tile is a run of output pixels of the flat (n, oh, ow) axis: a slice of one image
// (large maps; written straight into y with ldc = OH*OW) or several whole images (small
// maps: 8 x 49 columns per GEMM at 7x7 instead of 49, computed into a staging buffer and
// scattered). Workspace per thread: the packed B of one tile, Kc x round_up(cols, NR) floats
// with cols <= min(512, max(NR, 2^20 / Kc)) (<= 4 MiB), plus Kg x cols of staging for
// multi-image tiles;
// the packed weights (|w| rounded up to MR rows) are shared. Nothing scales with the batch.
//
// Threading: (group, tile) items in an OpenMP loop when there are >= 2 per thread; else
// (batch-1 deep layers) one tile at a time with its MR-row weight panels split over threads,
// each thread packing the weight panels it uses.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "conv/conv.h"
#include "conv/conv_pack.h"
#include "core/cpu_features.h"
#include "core/parallel.h"
#include "gemm/gemm.h"
#include "gemm/ukernel.h"

namespace fl {
namespace {

constexpr index_t kPackBudget = index_t{1} << 20;  // floats of packed B per thread (4 MiB)
// Widest tile: one K block of packed B (256 x 512 floats = 512 KiB) stays in the 1 MiB L2.
constexpr index_t kMaxCols = 512;

index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }
index_t round_up(index_t a, index_t b) { return ceil_div(a, b) * b; }

struct AlignedBuffer {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> ptr;
  explicit AlignedBuffer(index_t n) {
    const index_t bytes = round_up(std::max<index_t>(n, 16) * static_cast<index_t>(sizeof(float)), 64);
    ptr.reset(static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(bytes))));
    if (!ptr) throw std::bad_alloc();
  }
  float* get() const { return ptr.get(); }
};

using PackFn = void (*)(const PackArgs&);

PackFn pack_for(Isa isa) {
#if defined(FASTLAYERS_X86)
  if (isa == Isa::avx512) return pack_avx512::pack_b;
  if (isa == Isa::avx2) return pack_avx2::pack_b;
#endif
  return pack_generic::pack_b;
}

// The pieces every tile needs: sizes, the micro-kernel, and the layout of packed A and B.
struct Plan {
  const ConvParams& p;
  Ukernel uk;
  PackFn pack;
  index_t cg, kg, kc, hw, ohw;
  index_t mpad;       // Kg rounded up to MR
  index_t kc_block;   // K blocking of the micro-kernel loop
  index_t a_group;    // floats of packed A per group
  Plan(const ConvParams& p_) : p(p_), uk(ukernel_for(active_isa())), pack(pack_for(active_isa())) {
    cg = p.c / p.groups;
    kg = p.k / p.groups;
    kc = cg * p.kh * p.kw;
    hw = p.h * p.w;
    ohw = p.oh * p.ow;
    mpad = round_up(kg, uk.mr);
    kc_block = uk.kc;
    a_group = 0;
    for (index_t pc = 0; pc < kc; pc += kc_block) a_group += mpad * a_panel_stride(std::min(kc_block, kc - pc)) / uk.mr;
  }
  // Floats between consecutive MR-row panels of one K block (rounded to 64 bytes).
  index_t a_panel_stride(index_t kcb) const { return round_up(kcb * uk.mr, 16); }
  // Packed A of group g, K block starting at pc, panel ip.
  index_t a_offset(index_t g, index_t pc, index_t ip) const {
    const index_t before = (pc / kc_block) * mpad * a_panel_stride(kc_block) / uk.mr;
    return g * a_group + before + ip * a_panel_stride(std::min(kc_block, kc - pc));
  }
};

// Pack rows [ip0, ip1) panels (MR rows each) of W_g for every K block.
void pack_a_panels(const Plan& pl, const float* w, index_t g, index_t ip0, index_t ip1, float* a_pack) {
  const int mr = pl.uk.mr;
  const float* wg = w + g * pl.kg * pl.kc;
  for (index_t pc = 0; pc < pl.kc; pc += pl.kc_block) {
    const index_t kcb = std::min(pl.kc_block, pl.kc - pc);
    for (index_t ip = ip0; ip < ip1; ++ip) {
      float* dst = a_pack + pl.a_offset(g, pc, ip);
      const index_t i0 = ip * mr;
      const int rows = static_cast<int>(std::min<index_t>(mr, pl.kg - i0));
      for (index_t q = 0; q < kcb; ++q) {
        for (int i = 0; i < rows; ++i) dst[q * mr + i] = wg[(i0 + i) * pl.kc + pc + q];
        for (int i = rows; i < mr; ++i) dst[q * mr + i] = 0.0f;
      }
    }
  }
}

using Segment = PackSegment;

// The segments of tile [q0, q0 + cols): independent of the tap row, built once per tile so
// that the packing loop does no division (with the divisions in the loop, packing took ~3x
// the time of the GEMM per column at 64 channels).
void tile_segments(const Plan& pl, index_t q0, index_t cols, std::vector<Segment>& segs) {
  const index_t ow = pl.p.ow, nr = pl.uk.nr;
  segs.clear();
  index_t t = 0, q = q0;
  while (t < cols) {
    const index_t img = q / pl.ohw, pix = q % pl.ohw;
    const index_t oh = pix / ow, ow0 = pix % ow;
    const index_t run = std::min(ow - ow0, cols - t);
    for (index_t u = 0; u < run;) {
      const index_t tt = t + u, jp = tt / nr, jj = tt % nr;
      const index_t len = std::min(nr - jj, run - u);
      segs.push_back({img, oh, ow0 + u, len, jp, jj});
      u += len;
    }
    t += run;
    q += run;
  }
}

// Packed B of one tile (flat pixels [q0, q0 + cols)) for every K block (conv_pack.h).
void pack_b_tile(const Plan& pl, const float* x, index_t g, index_t q0, index_t cols, std::vector<Segment>& segs,
                 float* b_pack) {
  tile_segments(pl, q0, cols, segs);
  PackArgs a{&pl.p, x, g, pl.cg, pl.hw, pl.kc, pl.kc_block, pl.uk.nr, cols, segs.data(),
             static_cast<index_t>(segs.size()), b_pack};
  pl.pack(a);
}

// C (+)= A panels [ip0, ip1) x all B panels of the tile; bias on the last K block.
// C(i, t) = c[i * ldc + t].
void compute_tile(const Plan& pl, const float* a_pack, index_t g, const float* b_pack, index_t cols, index_t ip0,
                  index_t ip1, float* c, index_t ldc, const float* bias) {
  const int mr = pl.uk.mr, nr = pl.uk.nr;
  const index_t cols_pad = round_up(cols, nr), npanels = cols_pad / nr;
  const index_t mc_panels = std::max<index_t>(1, pl.uk.mc / mr);
  for (index_t pc = 0; pc < pl.kc; pc += pl.kc_block) {
    const index_t kcb = std::min(pl.kc_block, pl.kc - pc);
    const float beta = pc == 0 ? 0.0f : 1.0f;
    const bool last = pc + kcb == pl.kc;
    const float* block = b_pack + pc * cols_pad;
    for (index_t ic = ip0; ic < ip1; ic += mc_panels) {
      const index_t ic_end = std::min(ip1, ic + mc_panels);
      for (index_t jp = 0; jp < npanels; ++jp) {
        const float* bp = block + jp * kcb * nr;
        const int n_valid = static_cast<int>(std::min<index_t>(nr, cols - jp * nr));
        for (index_t ip = ic; ip < ic_end; ++ip) {
          const int m_valid = static_cast<int>(std::min<index_t>(mr, pl.kg - ip * mr));
          float* ct = c + ip * mr * ldc + jp * nr;
          pl.uk.fn(kcb, a_pack + pl.a_offset(g, pc, ip), bp, ct, ldc, 1.0f, beta, m_valid, n_valid);
          if (last && bias) apply_epilogue(ct, ldc, m_valid, n_valid, bias + ip * mr, nullptr, Activation::none);
        }
      }
    }
  }
}

struct TileSpec {
  index_t q0, cols;
};

// Tiles of the flat pixel axis: image slices of <= max_cols, or runs of whole images.
std::vector<TileSpec> make_tiles(const Plan& pl, index_t max_cols) {
  std::vector<TileSpec> tiles;
  const index_t n = pl.p.n, ohw = pl.ohw;
  if (ohw <= max_cols) {
    const index_t nb = std::max<index_t>(1, max_cols / ohw);
    for (index_t n0 = 0; n0 < n; n0 += nb) tiles.push_back({n0 * ohw, std::min(nb, n - n0) * ohw});
  } else {
    const index_t parts = ceil_div(ohw, max_cols);
    const index_t len = round_up(ceil_div(ohw, parts), pl.uk.nr);
    for (index_t img = 0; img < n; ++img)
      for (index_t s = 0; s < ohw; s += len) tiles.push_back({img * ohw + s, std::min(len, ohw - s)});
  }
  return tiles;
}

// Run one tile of group g into y: straight into y when it lies in one image, else through
// the staging buffer.
void run_tile(const Plan& pl, const float* x, const float* a_pack, const float* bias, float* y, index_t g,
              const TileSpec& t, float* b_pack, float* stage, index_t ip0, index_t ip1, std::vector<Segment>* segs) {
  const ConvParams& p = pl.p;
  if (segs) pack_b_tile(pl, x, g, t.q0, t.cols, *segs, b_pack);
  const float* gb = bias ? bias + g * pl.kg : nullptr;
  const index_t img = t.q0 / pl.ohw, pix = t.q0 % pl.ohw;
  if (pix + t.cols <= pl.ohw) {
    compute_tile(pl, a_pack, g, b_pack, t.cols, ip0, ip1, y + (img * p.k + g * pl.kg) * pl.ohw + pix, pl.ohw, gb);
    return;
  }
  compute_tile(pl, a_pack, g, b_pack, t.cols, ip0, ip1, stage, t.cols, gb);
}

// Copy rows [r0, r1) of a staged multi-image tile into y.
void scatter_stage(const Plan& pl, const float* stage, index_t g, const TileSpec& t, index_t r0, index_t r1, float* y) {
  const index_t n0 = t.q0 / pl.ohw, nb = t.cols / pl.ohw;
  for (index_t b = 0; b < nb; ++b)
    for (index_t r = r0; r < r1; ++r)
      std::memcpy(y + ((n0 + b) * pl.p.k + g * pl.kg + r) * pl.ohw, stage + r * t.cols + b * pl.ohw,
                  sizeof(float) * pl.ohw);
}

}  // namespace

void conv2d_forward(const ConvParams& p, const float* x, const float* w, const float* bias, float* y) {
  check_conv_params(p);
  if (p.n == 0) return;
  if (p.groups > 1 && p.groups == p.c) return depthwise::forward(p, x, w, bias, y);
  const Plan pl(p);
  const int nt = threads_for(2 * p.n * p.k * pl.ohw * pl.kc, index_t{1} << 20);
  const index_t budget_cols = std::max<index_t>(pl.uk.nr, kPackBudget / pl.kc / pl.uk.nr * pl.uk.nr);
  // ~4 items per thread to balance, but not below 128 columns (narrower tiles re-read the
  // packed weights more often than threads gain).
  const index_t balance = ceil_div(p.n * pl.ohw * p.groups, 4 * static_cast<index_t>(nt));
  const index_t max_cols = std::min({budget_cols, kMaxCols, nt > 1 ? std::max<index_t>(128, balance) : kMaxCols});
  const std::vector<TileSpec> tiles = make_tiles(pl, max_cols);
  index_t widest = 0;
  for (const TileSpec& t : tiles) widest = std::max(widest, t.cols);
  const index_t ntiles = static_cast<index_t>(tiles.size()), items = ntiles * p.groups;
  const index_t b_size = pl.kc * round_up(widest, pl.uk.nr);
  const index_t stage_size = widest > pl.ohw ? pl.mpad * widest : 0;  // multi-image tiles only
  const index_t npanels = pl.mpad / pl.uk.mr;
  AlignedBuffer a_pack(pl.a_group * p.groups);

  if (nt > 1 && items >= 2 * nt) {
    std::vector<AlignedBuffer> b_pack, stage;
    std::vector<std::vector<Segment>> segs(nt);
    for (int t = 0; t < nt; ++t) {
      segs[t].reserve(static_cast<size_t>(2 * widest + 2));
      b_pack.emplace_back(b_size);
      stage.emplace_back(stage_size);
    }
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
      for (index_t gi = 0; gi < p.groups * npanels; ++gi)
        pack_a_panels(pl, w, gi / npanels, gi % npanels, gi % npanels + 1, a_pack.get());
      const int tid = omp_get_thread_num();
      std::vector<Segment>& my_segs = segs[tid];
#pragma omp for schedule(dynamic, 1)
      for (index_t it = 0; it < items; ++it) {
        const index_t g = it / ntiles;
        const TileSpec& t = tiles[it % ntiles];
        run_tile(pl, x, a_pack.get(), bias, y, g, t, b_pack[tid].get(), stage[tid].get(), 0, npanels, &my_segs);
        if (t.q0 % pl.ohw + t.cols > pl.ohw) scatter_stage(pl, stage[tid].get(), g, t, 0, pl.kg, y);
      }
    }
    return;
  }

  // Few items: one tile at a time, weight panels split over the threads.
  AlignedBuffer b_pack(b_size), stage(stage_size);
  std::vector<Segment> segs;
  for (index_t it = 0; it < items; ++it) {
    const index_t g = it / ntiles;
    const TileSpec& t = tiles[it % ntiles];
    pack_b_tile(pl, x, g, t.q0, t.cols, segs, b_pack.get());
    const bool staged = t.q0 % pl.ohw + t.cols > pl.ohw;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      const index_t T = omp_get_num_threads(), tid = omp_get_thread_num();
      const index_t ip0 = npanels * tid / T, ip1 = npanels * (tid + 1) / T;
      if (ip0 < ip1) {
        if (it % ntiles == 0) pack_a_panels(pl, w, g, ip0, ip1, a_pack.get());  // group g's first tile
        run_tile(pl, x, a_pack.get(), bias, y, g, t, b_pack.get(), stage.get(), ip0, ip1, nullptr);
        if (staged) scatter_stage(pl, stage.get(), g, t, ip0 * pl.uk.mr, std::min(pl.kg, ip1 * pl.uk.mr), y);
      }
    }
  }
}

}  // namespace fl
