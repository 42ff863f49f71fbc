// conv2d forward on the GEMM micro-kernels: no im2col buffer, two ways to feed them.
//
// Per group, Y_g (Kg x pixels) = W_g (Kg x Kc) * col_g (Kc x pixels), Kc = C/groups * R * S.
// W_g is packed once per call into the micro-kernel's MR-row panels (shared by all threads).
//
// 1. Direct (stride 1, maps wide enough, see direct.h): the image is copied once into a
//    zero-padded buffer and the micro-kernel loads each tap's NR outputs straight from it.
// 2. Implicit im2col (everything else: strides, 1x1, small maps): the GEMM loops of BLIS
//    written again around the same micro-kernel (gemm/ukernel.h), with B gathered from the
//    image directly into kc x NR panels (conv_pack_impl.h): no Kc x pixels column matrix,
//    and no second copy by the GEMM's own packing.
//
// History, 1 thread, process CPU time (robust on this shared 2-core EPYC), batch 1,
// 64x56x56 -> 64, 3x3 (PyTorch/oneDNN: 86-89 GFLOP/s):
//   v1 chunked im2col buffer + run_gemm                      62-66 GFLOP/s
//   v2 implicit im2col into packed panels, per-ISA copies     66-70
//   v3 direct kernel on the padded-width output grid          80-82
//
// Batch 1 where the direct path does not fit (7x7 maps: 1 wasted column of 8; strides, 1x1;
// ResNet-18's 512x7x7 was 0.62x PyTorch on 2 threads): forward_few packs the image's whole
// column matrix on all threads (gathered from a padded copy when OW <= 16), splits the
// weight rows over the threads and reads them in place (no packed copy of |w|, 9.4 MB at
// 512x7x7), and takes a last panel of <= NR/2 columns as dot products (dot.h; 49 = 3 x 16
// + 1). 1 thread, process CPU time, 512x7x7: 0.75x -> 1.2x PyTorch.
//
// Tiles (path 2): runs of the flat (n, oh, ow) pixel axis, a slice of one image (large maps,
// written straight into y with ldc = OH*OW) or several whole images (small maps: 8 x 49
// columns per GEMM at 7x7 instead of 49, staged and scattered).
//
// Winograd F(2x2, 3x3) comes first where eligible (3x3 stride 1, one group, >= 32 channels,
// >= 196 outputs; winograd.cpp: U 16*K*C floats, V and M <= 4 MiB each).
//
// Workspace per thread, independent of the batch: path 1, one padded image of one group
// (C/groups planes of OH + (R-1)*dh + 1 or 2 rows of Wp floats, see DirectPlan; shared by
// the threads at batch 1) plus a Kg x 504 staging tile, kept between calls by the calling
// thread (core/workspace.h); path 2, the packed B of one tile, Kc x round_up(cols, NR)
// floats with cols <= min(512, max(NR, 2^20 / Kc)) (<= 4 MiB), plus Kg x cols of staging
// for multi-image tiles. Shared: the packed weights (|w| rounded up to MR rows per group).
// forward_few (batch 1), shared by the threads: the packed columns of one image (<= 4 MiB,
// cut into column tiles beyond), Kc x NR/2 floats of narrow columns, and for OW <= 16 one
// padded image of one group (C/groups x Hp x Wp); no packed weights.
//
// Threading: (image or tile, group) items in an OpenMP loop when there are enough per
// thread; else (batch 1) one item at a time, its (weight panels, column chunk) pieces shared
// out with stealing (path 1, core/parallel.h: StealQueue; the weight panels split only when
// the weights outweigh the padded image), or its MR-row weight panels (path 2, forward_few: the
// column packing split by panels first) split over the threads.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "conv/conv.h"
#include "conv/conv_pack.h"
#include "conv/direct.h"
#include "conv/dot.h"
#include "conv/winograd.h"
#include "core/cpu_features.h"
#include "core/parallel.h"
#include "core/workspace.h"
#include "gemm/gemm.h"
#include "gemm/ukernel.h"

namespace fl {
namespace {

constexpr index_t kPackBudget = index_t{1} << 20;  // floats of packed B per thread (4 MiB)
// Widest tile: one K block of packed B (256 x 512 floats = 512 KiB) stays in the 1 MiB L2.
constexpr index_t kMaxCols = 512;

index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }
index_t round_up(index_t a, index_t b) { return ceil_div(a, b) * b; }

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
  Plan(const ConvParams& p_) : p(p_), uk(ukernel_for(active_isa())), pack(pack_for(active_isa())) { init(); }
  // The plan of the direct paths: the direct micro-kernel's own MR x NR tile (4 x 24 under
  // AVX2, not the GEMM's 6 x 16) for the weight panels and the column panels; only the
  // GEMM's cache blocking is kept.
  Plan(const ConvParams& p_, const DirectKernel& dk) : Plan(p_) {
    Ukernel blocking{};  // every GEMM kernel pointer null: they do not match this tile
    blocking.mr = dk.mr;
    blocking.nr = dk.nr;
    // K blocks of equal size (576 taps: 3 x 192, not 256 + 256 + 64: the short block paid
    // its C loads and stores over a quarter of the FMAs).
    blocking.kc = ceil_div(p.c / p.groups * p.kh * p.kw, ceil_div(p.c / p.groups * p.kh * p.kw, uk.kc));
    blocking.mc = uk.mc;
    blocking.nc = uk.nc;
    blocking.name = uk.name;
    uk = blocking;
    init();
  }
  void init() {
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

// One MR-row panel of a K block: dst[q*MR + i] = W_g(i0 + i, pc + q), zero rows past kg.
// MR is a template constant so the row loop unrolls into MR independent streams (2x faster
// than a runtime trip count; at batch 1, 512 channels, packing is a third of the GEMM time).
template <int MR>
void pack_a_panel(const float* wg, index_t kc, index_t rows, index_t pc, index_t kcb, float* dst) {
  if (rows == MR) {
    const float* src[MR];
    for (int i = 0; i < MR; ++i) src[i] = wg + i * kc + pc;
    for (index_t q = 0; q < kcb; ++q)
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) dst[q * MR + i] = src[i][q];
    return;
  }
  for (index_t q = 0; q < kcb; ++q)
    for (int i = 0; i < MR; ++i) dst[q * MR + i] = i < rows ? wg[i * kc + pc + q] : 0.0f;
}

// Pack panels [ip0, ip1) (MR rows each) of W_g for every K block.
void pack_a_panels(const Plan& pl, const float* w, index_t g, index_t ip0, index_t ip1, float* a_pack) {
  const int mr = pl.uk.mr;
  const float* wg = w + g * pl.kg * pl.kc;
  for (index_t pc = 0; pc < pl.kc; pc += pl.kc_block) {
    const index_t kcb = std::min(pl.kc_block, pl.kc - pc);
    for (index_t ip = ip0; ip < ip1; ++ip) {
      float* dst = a_pack + pl.a_offset(g, pc, ip);
      const index_t i0 = ip * mr, rows = std::min<index_t>(mr, pl.kg - i0);
      const float* src = wg + i0 * pl.kc;
      switch (mr) {
        case 4: pack_a_panel<4>(src, pl.kc, rows, pc, kcb, dst); break;
        case 6: pack_a_panel<6>(src, pl.kc, rows, pc, kcb, dst); break;
        case 12: pack_a_panel<12>(src, pl.kc, rows, pc, kcb, dst); break;
        default:
          for (index_t q = 0; q < kcb; ++q)
            for (int i = 0; i < mr; ++i) dst[q * mr + i] = i < rows ? src[i * pl.kc + pc + q] : 0.0f;
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

DotPanelFn dot_for(Isa isa) {
#if defined(FASTLAYERS_X86)
  if (isa == Isa::avx512) return dot_avx512::dot_panel;
  if (isa == Isa::avx2) return dot_avx2::dot_panel;
#endif
  return dot_generic::dot_panel;
}

// Columns of a tile's last panel taken by dot products (dot.h) rather than the micro-kernel,
// where most of the panel would be padding (7x7: 1 of 16; 14x14: 4 of 16): up to NR/2 when
// the weight rows are read in place anyway (forward_few), up to NR/4 next to packed weights,
// where the dot products read the rows once more from L3 (8 of 16 columns at 8x512x7x7,
// 1 thread: 0.93x -> 0.88x PyTorch).
int narrow_columns(const Plan& pl, index_t cols, bool in_place) {
  const index_t rem = cols % pl.uk.nr;
  return rem && rem <= pl.uk.nr / (in_place ? 2 : 4) ? static_cast<int>(rem) : 0;
}

// bt (nj rows of kc) = the last nj columns of the tile, out of its packed last panel.
void copy_narrow_columns(const Plan& pl, const float* b_pack, index_t cols, int nj, float* bt) {
  const index_t nr = pl.uk.nr, cols_pad = round_up(cols, nr), jl = cols_pad / nr - 1;
  for (index_t pc = 0; pc < pl.kc; pc += pl.kc_block) {
    const index_t kcb = std::min(pl.kc_block, pl.kc - pc);
    const float* panel = b_pack + pc * cols_pad + jl * kcb * nr;
    for (int j = 0; j < nj; ++j)
      for (index_t q = 0; q < kcb; ++q) bt[j * pl.kc + pc + q] = panel[q * nr + j];
  }
}

// C (+)= A panels [ip0, ip1) x all B panels of the tile; bias on the last K block.
// C(i, t) = c[i * ldc + t]. With nj > 0 the last panel's nj columns are dot products of bt
// with the weight rows read in place from w (dot.h): 7x7 tiles of 2 images are 98 columns,
// 6 full panels and 2 columns instead of a 7th panel (12% of the FMAs).
void compute_tile(const Plan& pl, const float* a_pack, const float* w, index_t g, const float* b_pack,
                  const float* bt, int nj, index_t cols, index_t ip0, index_t ip1, float* c, index_t ldc,
                  const float* bias) {
  const int mr = pl.uk.mr, nr = pl.uk.nr;
  const index_t cols_pad = round_up(cols, nr), npanels = cols_pad / nr - (nj ? 1 : 0);
  const DotPanelFn dot = dot_for(active_isa());
  const float* wg = w + g * pl.kg * pl.kc;
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
      if (nj)
        for (index_t ip = ic; ip < ic_end; ++ip) {
          const int m_valid = static_cast<int>(std::min<index_t>(mr, pl.kg - ip * mr));
          dot(kcb, wg + ip * mr * pl.kc + pc, pl.kc, m_valid, bt + pc, pl.kc, nj, c + ip * mr * ldc + npanels * nr,
              ldc, beta, last && bias ? bias + ip * mr : nullptr);
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
// bt: the tile's narrow columns (copied here when this call packs, i.e. segs is given).
void run_tile(const Plan& pl, const float* x, const float* a_pack, const float* w, const float* bias, float* y,
              index_t g, const TileSpec& t, float* b_pack, float* bt, float* stage, index_t ip0, index_t ip1,
              std::vector<Segment>* segs) {
  const ConvParams& p = pl.p;
  const int nj = narrow_columns(pl, t.cols, false);
  if (segs) {
    pack_b_tile(pl, x, g, t.q0, t.cols, *segs, b_pack);
    if (nj) copy_narrow_columns(pl, b_pack, t.cols, nj, bt);
  }
  const float* gb = bias ? bias + g * pl.kg : nullptr;
  const index_t img = t.q0 / pl.ohw, pix = t.q0 % pl.ohw;
  if (pix + t.cols <= pl.ohw) {
    compute_tile(pl, a_pack, w, g, b_pack, bt, nj, t.cols, ip0, ip1, y + (img * p.k + g * pl.kg) * pl.ohw + pix,
                 pl.ohw, gb);
    return;
  }
  compute_tile(pl, a_pack, w, g, b_pack, bt, nj, t.cols, ip0, ip1, stage, t.cols, gb);
}

// Copy rows [r0, r1) of a staged multi-image tile into y.
void scatter_stage(const Plan& pl, const float* stage, index_t g, const TileSpec& t, index_t r0, index_t r1, float* y) {
  const index_t n0 = t.q0 / pl.ohw, nb = t.cols / pl.ohw;
  for (index_t b = 0; b < nb; ++b)
    for (index_t r = r0; r < r1; ++r)
      std::memcpy(y + ((n0 + b) * pl.p.k + g * pl.kg + r) * pl.ohw, stage + r * t.cols + b * pl.ohw,
                  sizeof(float) * pl.ohw);
}

// ---- the direct path (stride 1, see direct.h) --------------------------------------------

DirectKernel direct_for(Isa isa, DirectUse use = DirectUse::spatial) {
#if defined(FASTLAYERS_X86)
  if (isa == Isa::avx512) return direct_kernel_avx512(use);
  if (isa == Isa::avx2) return direct_kernel_avx2(use);
#endif
  return direct_kernel_generic(use);
}

// Strides > 1 (ResNet's 7x7 stem, downsampling 3x3s): each padded channel is split into
// sh x sw phase planes, phase (a, b) holding padded rows a, a + sh, ... and columns b, b + sw,
// ...; tap (i, j) of output (oh, ow) is then row oh + i*dh/sh, column ow + j*dw/sw of phase
// (i*dh % sh, j*dw % sw): stride 1 again on planes of width Wq = OW + (kw-1)*dw/sw, and the
// same micro-kernel reads NR consecutive outputs of a tap straight from xp. The implicit
// im2col packed 49/4 times more floats per image at the 7x7 stride-2 stem (see
// direct_eligible for the measured gain and where it stops paying).
// Stride 1: the padded row width, with the right padding of each row shared with the left
// padding of the next. A row holds [pw zeros][W inputs][zeros to Wp]; a tap past the row's
// end reads the next row's leading zeros, which is the right padding it needed, as long as
// it lands within them: Wp >= OW + (kw-1)*dw - pw (and Wp >= OW, the outputs of one row
// numbered f = oh*Wp + ow, ow < OW). For "same" 3x3 that is Wp = W + 1, one
// discarded output column per row where W + 2 gave two (28x28: 3.4% of the FMAs instead of
// 6.7%; 56x56: 1.8% instead of 3.4%).
index_t shared_pad_width(const ConvParams& p) {
  return std::max({p.w + p.pw, p.ow + (p.kw - 1) * p.dw - p.pw, p.ow});
}

// Wp of the direct path: the phase planes' width for strides > 1, else shared_pad_width.
index_t direct_width(const ConvParams& p) {
  return p.sh > 1 || p.sw > 1 ? p.ow + (p.kw - 1) * p.dw / p.sw : shared_pad_width(p);
}

// The padded image the direct kernel reads: every channel (every phase plane, strides > 1)
// of one group, each plane `rows` padded rows of Wp floats.
struct DirectPlan {
  DirectKernel dk;
  index_t wp, rows;              // padded width; rows of each plane
  index_t plane, chan, xp_size;  // floats per (phase) plane, per channel, per image
  index_t flat;                  // outputs of one image on the padded width (OH x Wp)
  std::vector<index_t> off;      // tap r -> offset in the padded image
};

DirectPlan direct_plan(const Plan& pl) {
  const ConvParams& p = pl.p;
  DirectPlan d;
  d.dk = direct_for(active_isa());
  d.wp = direct_width(p);
  // Rows read: the output rows, the kernel's reach below them (in phase rows for strides >
  // 1), then the floats read past that: a panel loads NR outputs from its first column, and
  // a tap (kw-1)*dw/sw columns to its right (stride 1: the next row's left padding, see
  // shared_pad_width); enough rows that all of them land in the channel's own plane.
  const index_t reach = (p.kh - 1) * p.dh / p.sh;
  d.rows = p.oh + reach + ceil_div(d.dk.nr + (p.kw - 1) * p.dw / p.sw, d.wp);
  d.plane = d.rows * d.wp;
  d.chan = d.plane * p.sh * p.sw;
  d.xp_size = pl.cg * d.chan;
  d.flat = p.oh * d.wp;
  d.off.resize(static_cast<size_t>(pl.kc));
  for (index_t c = 0, r = 0; c < pl.cg; ++c)
    for (index_t i = 0; i < p.kh; ++i)
      for (index_t j = 0; j < p.kw; ++j) {
        const index_t ri = i * p.dh, rj = j * p.dw;
        d.off[static_cast<size_t>(r++)] = c * d.chan + ((ri % p.sh) * p.sw + rj % p.sw) * d.plane +
                                          ri / p.sh * d.wp + rj / p.sw;
      }
  return d;
}

// Worth it when the kernel is wider than 1x1 (a 1x1 packs as a plain copy already) and the
// discarded columns stay under 1/8 of the computed ones (3x3 "same": 56x56 1 of 57; 14x14
// 1 of 15, 8 x 256 channels 1 thread 76.6 -> 84.8 GFLOP/s; 7x7 1 of 8, no: 8 x 512 channels
// 77.2 -> 63.0 against the multi-image tiles).
bool direct_eligible(const Plan& pl) {
  const ConvParams& p = pl.p;
  if (p.kh * p.kw == 1) return false;
  // Strided: only where the implicit im2col would pack >= 4x more floats than the phase
  // planes hold (7x7 stride 2: 12x; 8 images, 1 thread: 56 -> 76 GFLOP/s). At 3x3 stride 2
  // (2.25x) the packing is cheap enough and the implicit path's multi-image tiles win
  // (8x256x14x14 -> 512: 76 vs 63 GFLOP/s).
  if ((p.sh > 1 || p.sw > 1) && p.kh * p.kw < 4 * p.sh * p.sw) return false;
  const index_t wp = direct_width(p);
  return (wp - p.ow) * 8 < wp;
}

// One padded row: dst[v] = src[v*sw + b - pw] for v in [vlo, vhi), zeros elsewhere in [0, Wp).
// Plain loops: one memset/memcpy call per row cost as much as the copying at 56-float rows.
void pad_row(const float* src, index_t sw, index_t shift, index_t vlo, index_t vhi, index_t wp, float* dst) {
  for (index_t v = 0; v < vlo; ++v) dst[v] = 0.0f;
  if (sw == 1) {
    const float* s = src + shift;
    for (index_t v = vlo; v < vhi; ++v) dst[v] = s[v];
  } else {
    for (index_t v = vlo; v < vhi; ++v) dst[v] = src[v * sw + shift];
  }
  for (index_t v = vhi; v < wp; ++v) dst[v] = 0.0f;
}

// Rows [r0, r1) of every plane of group g of image n, padded into xp. Row u of phase plane
// (a, b) is input row u*sh + a - ph, its column v input column v*sw + b - pw (stride 1: [pw
// zeros][W inputs][zeros to Wp]); zeros wherever that falls outside the input.
void pad_image(const Plan& pl, const DirectPlan& d, const float* x, index_t n, index_t g, index_t r0, index_t r1,
               float* xp) {
  const ConvParams& p = pl.p;
  for (index_t c = 0; c < pl.cg; ++c) {
    const float* src = x + (n * p.c + g * pl.cg + c) * pl.hw;
    for (index_t a = 0; a < p.sh; ++a)
      for (index_t b = 0; b < p.sw; ++b) {
        float* dst = xp + c * d.chan + (a * p.sw + b) * d.plane;
        // Columns v with iw = v*sw + b - pw inside [0, W).
        const index_t vlo = std::min(d.wp, p.pw > b ? ceil_div(p.pw - b, p.sw) : 0);
        const index_t vhi = std::max(vlo, std::min(d.wp, ceil_div(p.w + p.pw - b, p.sw)));
        for (index_t u = r0; u < r1; ++u) {
          float* row = dst + u * d.wp;
          const index_t ih = u * p.sh + a - p.ph;
          if (ih < 0 || ih >= p.h) {
            for (index_t v = 0; v < d.wp; ++v) row[v] = 0.0f;
            continue;
          }
          pad_row(src + ih * p.w, p.sw, b - p.pw, vlo, vhi, d.wp, row);
        }
      }
  }
}

// Outputs [f0, f0 + cols) of the padded-width numbering for weight panels [ip0, ip1) of
// group g, computed into stage (Kg x cols) and copied to y without the discarded columns.
void direct_tile(const Plan& pl, const DirectPlan& d, const float* xp, const float* a_pack,
                 const float* bias, float* y, index_t n, index_t g, index_t f0, index_t cols, index_t ip0, index_t ip1,
                 float* stage) {
  const ConvParams& p = pl.p;
  const int mr = d.dk.mr, nr = d.dk.nr;
  const index_t npanels_n = ceil_div(cols, nr);
  const index_t mc_panels = std::max<index_t>(1, pl.uk.mc / mr);
  const float* gb = bias ? bias + g * pl.kg : nullptr;
  for (index_t pc = 0; pc < pl.kc; pc += pl.kc_block) {
    const index_t kcb = std::min(pl.kc_block, pl.kc - pc);
    const float beta = pc == 0 ? 0.0f : 1.0f;
    const bool last = pc + kcb == pl.kc;
    const float* a_block = a_pack + pl.a_offset(g, pc, 0);  // (no division per call)
    const index_t a_stride = pl.a_panel_stride(kcb);
    for (index_t ic = ip0; ic < ip1; ic += mc_panels) {
      const index_t ic_end = std::min(ip1, ic + mc_panels);
      for (index_t jp = 0; jp < npanels_n; ++jp) {
        const int n_valid = static_cast<int>(std::min<index_t>(nr, cols - jp * nr));
        const float* xb = xp + f0 + jp * nr;
        for (index_t ip = ic; ip < ic_end; ++ip) {
          const int m_valid = static_cast<int>(std::min<index_t>(mr, pl.kg - ip * mr));
          float* ct = stage + ip * mr * cols + jp * nr;
          d.dk.fn(kcb, a_block + ip * a_stride, xb, d.off.data() + pc, ct, cols, beta, m_valid, n_valid);
          if (last && gb) apply_epilogue(ct, cols, m_valid, n_valid, gb + ip * mr, nullptr, Activation::none);
        }
      }
    }
  }
  // Scatter: output row oh covers f in [oh*Wp, oh*Wp + OW).
  float* yg = y + (n * p.k + g * pl.kg) * pl.ohw;
  const index_t oh0 = f0 / d.wp, oh1 = (f0 + cols - 1) / d.wp;
  const index_t k1 = std::min(pl.kg, ip1 * mr);
  for (index_t oh = oh0; oh <= oh1; ++oh) {
    const index_t lo = std::max(f0, oh * d.wp), hi = std::min(f0 + cols, oh * d.wp + p.ow);
    if (hi <= lo) continue;
    for (index_t k = ip0 * mr; k < k1; ++k) {
      // A plain loop: a memcpy call per 56-float row cost more than the copying.
      float* dst = yg + k * pl.ohw + oh * p.ow + (lo - oh * d.wp);
      const float* src = stage + k * cols + (lo - f0);
      for (index_t e = 0; e < hi - lo; ++e) dst[e] = src[e];
    }
  }
}

// Outputs [0, flat) of the padded-width numbering in chunks of whole NR-column panels, <= tile
// columns each (a multiple of NR), as equal as can be.
template <class F>
void for_chunks(index_t flat, index_t nr, index_t tile, F&& chunk) {
  const index_t panels = ceil_div(flat, nr), nchunks = ceil_div(panels, tile / nr);
  for (index_t ch = 0; ch < nchunks; ++ch) {
    const index_t a = panels * ch / nchunks * nr, b = std::min(flat, panels * (ch + 1) / nchunks * nr);
    if (a < b) chunk(a, b - a);
  }
}

void forward_direct(const Plan& pl, const float* x, const float* w, const float* bias, float* y, int nt) {
  const ConvParams& p = pl.p;
  const DirectPlan d = direct_plan(pl);
  const index_t nr = d.dk.nr, flat = d.flat;
  const index_t pairs = p.n * p.groups;
  const bool outer = nt > 1 && pairs >= nt;
  const index_t npanels = pl.mpad / pl.uk.mr;
  // Chunks of the padded-width output axis, a multiple of NR: <= 512 columns (one K block of
  // 256 taps of the input rows they touch stays in L1/L2) for one image a thread; at batch 1
  // 4 panels, the grain the threads share an image out in (2 threads, 1x64x56x56: 176
  // GFLOP/s in chunks of 96 columns, 159 in chunks of 504, which split 3.5 : 3.5).
  const index_t tile = std::max<index_t>(nr, (outer || nt == 1 ? kMaxCols : 4 * nr) / nr * nr);
  // Batch 1 (fewer (image, group) pairs than threads), see below.
  const bool split_rows = !outer && nt > 1 && pl.kg * pl.kc > pl.cg * d.chan && npanels >= 4 * nt;
  // Workspace slots: 0 packed weights, 1 the padded image (batch 1), then per thread a stage
  // and (one image a thread) a padded image.
  thread_local Workspace ws;
  float* const a_pack = ws.get(0, pl.a_group * p.groups);
  std::vector<float*> stage;
  for (int t = 0; t < nt; ++t) stage.push_back(ws.get(2 + 2 * t, pl.mpad * tile));
  if (outer) {
    std::vector<float*> xp;
    for (int t = 0; t < nt; ++t) xp.push_back(ws.get(3 + 2 * t, d.xp_size));
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
      for (index_t gi = 0; gi < p.groups * npanels; ++gi)
        pack_a_panels(pl, w, gi / npanels, gi % npanels, gi % npanels + 1, a_pack);
      const int tid = omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
      for (index_t it = 0; it < pairs; ++it) {
        const index_t n = it / p.groups, g = it % p.groups;
        pad_image(pl, d, x, n, g, 0, d.rows, xp[tid]);
        for_chunks(flat, nr, tile, [&](index_t f0, index_t cols) {
          direct_tile(pl, d, xp[tid], a_pack, bias, y, n, g, f0, cols, 0, npanels, stage[tid]);
        });
      }
    }
    return;
  }
  // Fewer (image, group) pairs than threads (batch 1): the threads share each pair. Each
  // pads the rows its own share of the columns starts at (so that most of what it reads it
  // wrote itself). Then items of (weight rows, column chunk) in a StealQueue: the weight rows
  // split in nt ranges when the weights outweigh the padded image (each thread then reads its
  // share of them and all of the image), else all of them, over the chunks. Each thread
  // starts on its own share and takes over the end of another's when done.
  float* const xp = ws.get(1, d.xp_size);
  std::vector<std::pair<index_t, index_t>> chunks;
  for_chunks(flat, nr, tile, [&](index_t f0, index_t cols) { chunks.emplace_back(f0, cols); });
  const index_t nchunks = static_cast<index_t>(chunks.size()), ranges = split_rows ? nt : 1;
  for (index_t it = 0; it < pairs; ++it) {
    const index_t n = it / p.groups, g = it % p.groups;
    StealQueue queue(ranges * nchunks, nt);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      const int Tn = omp_get_num_threads(), tid = omp_get_thread_num();
      if (n == 0) pack_a_panels(pl, w, g, npanels * tid / Tn, npanels * (tid + 1) / Tn, a_pack);
      const index_t r0 = tid == 0 ? 0 : flat * tid / Tn / d.wp;
      const index_t r1 = tid == Tn - 1 ? d.rows : flat * (tid + 1) / Tn / d.wp;
      pad_image(pl, d, x, n, g, r0, r1, xp);
#pragma omp barrier  // the packed weights and the padded image are complete
      queue.run(tid, [&](index_t item) {
        const index_t r = item / nchunks, ip0 = npanels * r / ranges, ip1 = npanels * (r + 1) / ranges;
        const auto& [f0, cols] = chunks[static_cast<size_t>(item % nchunks)];
        if (ip0 < ip1) direct_tile(pl, d, xp, a_pack, bias, y, n, g, f0, cols, ip0, ip1, stage[tid]);
      });
    }
  }
}

// ---- 1x1, stride 1, no padding: the input planes are the B matrix ---------------------------
//
// B(c, pixel) = x[c*HW + pixel]: the direct kernel reads full panels straight from x with
// off[c] = c*HW and writes straight into y (no copy at all); a tile's last partial panel is
// copied to a Kc x NR scratch first, so no load runs past the end of x. Workspace: that
// scratch (Kc x NR floats per thread) and the packed weights.
bool pointwise_eligible(const Plan& pl) {
  const ConvParams& p = pl.p;
  if (!(p.kh == 1 && p.kw == 1 && p.sh == 1 && p.sw == 1 && p.ph == 0 && p.pw == 0 && p.oh == p.h && p.ow == p.w))
    return false;
  // Only for few output channels: packing costs a copy per B element against 2*Kg flops, so
  // it matters at Kg = 64 (256->64 at 56x56: 14.7 -> 12.9 ms, 1 thread), while at Kg = 256
  // the packed panels' contiguous reads beat loads spread over Kc planes (64->256: 10.8
  // packed vs 13.0 ms direct).
  return pl.kg <= 96;
}

void pointwise_tile(const Plan& pl, const DirectKernel& dk, const index_t* off, const float* x, const float* a_pack,
                    const float* bias, float* y, index_t n, index_t g, index_t f0, index_t cols, index_t ip0,
                    index_t ip1, float* tail) {
  const ConvParams& p = pl.p;
  const int mr = dk.mr, nr = dk.nr;
  const float* xb = x + (n * p.c + g * pl.cg) * pl.hw + f0;
  float* c = y + (n * p.k + g * pl.kg) * pl.ohw + f0;
  const index_t full = cols / nr, rest = cols - full * nr;
  if (rest) {
    for (index_t r = 0; r < pl.kc; ++r) {
      const float* src = xb + r * pl.hw + full * nr;
      float* d = tail + r * nr;
      for (index_t e = 0; e < nr; ++e) d[e] = e < rest ? src[e] : 0.0f;
    }
  }
  const index_t mc_panels = std::max<index_t>(1, pl.uk.mc / mr);
  const float* gb = bias ? bias + g * pl.kg : nullptr;
  for (index_t pc = 0; pc < pl.kc; pc += pl.kc_block) {
    const index_t kcb = std::min(pl.kc_block, pl.kc - pc);
    const float beta = pc == 0 ? 0.0f : 1.0f;
    const bool last = pc + kcb == pl.kc;
    for (index_t ic = ip0; ic < ip1; ic += mc_panels) {
      const index_t ic_end = std::min(ip1, ic + mc_panels);
      for (index_t jp = 0; jp < full + (rest ? 1 : 0); ++jp) {
        const bool is_tail = jp == full;
        const int n_valid = is_tail ? static_cast<int>(rest) : nr;
        // The tail scratch is laid out like tap rows of stride NR: offsets r*NR.
        for (index_t ip = ic; ip < ic_end; ++ip) {
          const int m_valid = static_cast<int>(std::min<index_t>(mr, pl.kg - ip * mr));
          float* ct = c + ip * mr * pl.ohw + jp * nr;
          if (is_tail)
            dk.fn(kcb, a_pack + pl.a_offset(g, pc, ip), tail, off + pl.kc + pc, ct, pl.ohw, beta, m_valid, n_valid);
          else
            dk.fn(kcb, a_pack + pl.a_offset(g, pc, ip), xb + jp * nr, off + pc, ct, pl.ohw, beta, m_valid, n_valid);
          if (last && gb) apply_epilogue(ct, pl.ohw, m_valid, n_valid, gb + ip * mr, nullptr, Activation::none);
        }
      }
    }
  }
}

void forward_pointwise(const Plan& pl, const float* x, const float* w, const float* bias, float* y, int nt) {
  const ConvParams& p = pl.p;
  const DirectKernel dk = direct_for(active_isa(), DirectUse::pointwise);
  // off[0, kc): rows of x (stride HW); off[kc, 2kc): rows of the tail scratch (stride NR).
  std::vector<index_t> off(static_cast<size_t>(2 * pl.kc));
  for (index_t r = 0; r < pl.kc; ++r) {
    off[static_cast<size_t>(r)] = r * pl.hw;
    off[static_cast<size_t>(pl.kc + r)] = r * dk.nr;
  }
  const index_t nr = dk.nr, npanels = pl.mpad / pl.uk.mr;
  const index_t balance = ceil_div(p.n * pl.hw * p.groups, 4 * static_cast<index_t>(nt));
  const index_t want = nt > 1 ? std::min(kMaxCols, std::max<index_t>(128, balance)) : kMaxCols;
  const index_t parts = ceil_div(pl.hw, std::max<index_t>(nr, want));
  const index_t tile = round_up(ceil_div(pl.hw, parts), nr);
  const index_t ntiles = ceil_div(pl.hw, tile), items = p.n * p.groups * ntiles;
  AlignedBuffer a_pack(pl.a_group * p.groups);
  std::vector<AlignedBuffer> tail;
  for (int t = 0; t < nt; ++t) tail.emplace_back(pl.kc * nr);
  auto item = [&](index_t it, index_t ip0, index_t ip1, float* tl) {
    const index_t ti = it % ntiles, ng = it / ntiles;
    const index_t f0 = ti * tile;
    pointwise_tile(pl, dk, off.data(), x, a_pack.get(), bias, y, ng / p.groups, ng % p.groups, f0,
                   std::min(tile, pl.hw - f0), ip0, ip1, tl);
  };
  if (nt > 1 && items >= 2 * nt) {
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
      for (index_t gi = 0; gi < p.groups * npanels; ++gi)
        pack_a_panels(pl, w, gi / npanels, gi % npanels, gi % npanels + 1, a_pack.get());
      const int tid = omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
      for (index_t it = 0; it < items; ++it) item(it, 0, npanels, tail[tid].get());
    }
    return;
  }
  for (index_t it = 0; it < items; ++it) {
    const index_t g = (it / ntiles) % p.groups;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      const index_t T = omp_get_num_threads(), tid = omp_get_thread_num();
      const index_t ip0 = npanels * tid / T, ip1 = npanels * (tid + 1) / T;
      if (ip0 < ip1) {
        if (it / ntiles < p.groups && it % ntiles == 0) pack_a_panels(pl, w, g, ip0, ip1, a_pack.get());
        item(it, ip0, ip1, tail[tid].get());
      }
    }
  }
}

// ---- few items (batch 1): one packed B per image, weights read in place ----------------
//
// With fewer (image, tile, group) items than 2 per thread, the batch-8 scheme (each thread
// its own tiles, the weights packed once and shared) has nothing to share out. Here one
// image's whole column matrix (Kc x OH*OW, 1.8 MB at 256x14x14) is packed by both threads
// together (each a range of NR-column panels), then each thread computes a range of MR-row
// weight panels over all of it. The weights are not packed: the micro-kernel reads its
// MR rows in place (stride Kc), each MR x kc block once from memory and then from L1 for
// every column panel. Packing them cost a read and a write of |w| per call (9.4 MB at
// 512x7x7) and, before this path, the column packing ran on one thread.
//
// Loop order per K block: weight panel (L1) -> column panels (the K block of packed B,
// kc x cols, 213 KB at 14x14, stays in L2).
void compute_tile_inplace(const Plan& pl, const float* w, index_t g, const float* b_pack, const float* bt, int nj,
                          index_t cols, index_t ip0, index_t ip1, float* c, index_t ldc, const float* bias) {
  const int mr = pl.uk.mr, nr = pl.uk.nr;
  const index_t cols_pad = round_up(cols, nr), npanels = cols_pad / nr - (nj ? 1 : 0);
  const DotPanelFn dot = dot_for(active_isa());
  const float* wg = w + g * pl.kg * pl.kc;
  const UkernelExFn plain = pl.uk.fn_ex_strided[0];
  const UkernelExFn with_bias = pl.uk.fn_ex_strided[1 + static_cast<int>(Activation::none)];
  for (index_t pc = 0; pc < pl.kc; pc += pl.kc_block) {
    const index_t kcb = std::min(pl.kc_block, pl.kc - pc);
    const float beta = pc == 0 ? 0.0f : 1.0f;
    const bool last = pc + kcb == pl.kc;
    const float* block = b_pack + pc * cols_pad;
    for (index_t ip = ip0; ip < ip1; ++ip) {
      const int m_valid = static_cast<int>(std::min<index_t>(mr, pl.kg - ip * mr));
      const float* a = wg + ip * mr * pl.kc + pc;
      const TileEpilogue epi{bias ? bias + ip * mr : nullptr, nullptr, Activation::none};
      const bool with_epi = last && bias;
      const UkernelExFn fn = with_epi ? with_bias : plain;
      for (index_t jp = 0; jp < npanels; ++jp) {
        const int n_valid = static_cast<int>(std::min<index_t>(nr, cols - jp * nr));
        // No epilogue pointer outside the last K block: the portable kernel applies any it
        // is given, whatever the entry.
        fn(kcb, a, pl.kc, 1, block + jp * kcb * nr, nr, c + ip * mr * ldc + jp * nr, ldc, 1.0f, beta, m_valid,
           n_valid, with_epi ? &epi : nullptr);
      }
      if (nj)
        dot(kcb, a, pl.kc, m_valid, bt + pc, pl.kc, nj, c + ip * mr * ldc + npanels * nr, ldc, beta,
            last ? epi.row_bias : nullptr);
    }
  }
}

// Gather packing for narrow outputs (OW <= 16): B(r = (c, i, j), t) = xp[tapoff[r] + base[t]]
// on a zero-padded copy xp of the image (one group), base[t] = oh*sh*Wp + ow*sw, tapoff[r] =
// c*Hp*Wp + i*dh*Wp + j*dw: no bounds tests and no per-run bookkeeping. The run-based
// packing (conv_pack_impl.h) pays ~20 cycles per run of <= 7 pixels at 7x7 (10 runs per tap
// row, two thirds of them clipped by the padding): 62% of a 512x7x7 call's profile at 6
// output channels. Panels [jp0, jp1) of the tile, zero columns past cols.
void pack_gather(const Plan& pl, const float* xp, const index_t* tapoff, const std::int32_t* base, index_t cols,
                 index_t jp0, index_t jp1, float* b_pack) {
  const index_t nr = pl.uk.nr, cols_pad = round_up(cols, nr);
  for (index_t pc = 0; pc < pl.kc; pc += pl.kc_block) {
    const index_t kcb = std::min(pl.kc_block, pl.kc - pc);
    float* block = b_pack + pc * cols_pad;
    for (index_t r = pc; r < pc + kcb; ++r) {
      const float* src = xp + tapoff[r];
      for (index_t jp = jp0; jp < jp1; ++jp) {
        float* d = block + jp * kcb * nr + (r - pc) * nr;
        const std::int32_t* bs = base + jp * nr;
        const index_t n = std::min(nr, cols - jp * nr);
        for (index_t e = 0; e < n; ++e) d[e] = src[bs[e]];
        for (index_t e = n; e < nr; ++e) d[e] = 0.0f;
      }
    }
  }
}

void forward_few(const Plan& pl, const float* x, const float* w, const float* bias, float* y, int nt) {
  const ConvParams& p = pl.p;
  const index_t nr = pl.uk.nr, npanels = pl.mpad / pl.uk.mr;
  // Tiles: one image's columns, cut only where the packed B would pass the budget (4 MiB).
  const index_t budget_cols = std::max<index_t>(nr, kPackBudget / pl.kc / nr * nr);
  const index_t parts = ceil_div(pl.ohw, budget_cols);
  const index_t len = round_up(ceil_div(pl.ohw, parts), nr);
  AlignedBuffer b_pack(pl.kc * std::min(len, round_up(pl.ohw, nr)));
  AlignedBuffer bt(pl.kc * (nr / 2));
  // Gather packing (pack_gather) for narrow outputs: the padded group image, its tap offsets
  // and the tile's column bases.
  const index_t hp = (p.oh - 1) * p.sh + (p.kh - 1) * p.dh + 1, wp = (p.ow - 1) * p.sw + (p.kw - 1) * p.dw + 1;
  const index_t hpp = std::max(hp, p.h + p.ph), wpp = std::max(wp, p.w + p.pw), plane = hpp * wpp;
  const bool gather = p.ow <= 16 && plane < (index_t{1} << 31);  // int32 column bases
  AlignedBuffer xp(gather ? pl.cg * plane : 0);
  std::vector<index_t> tapoff(gather ? static_cast<size_t>(pl.kc) : 0);
  std::vector<std::int32_t> base(gather ? static_cast<size_t>(round_up(len, nr)) : 0);
  if (gather)
    for (index_t c = 0, r = 0; c < pl.cg; ++c)
      for (index_t i = 0; i < p.kh; ++i)
        for (index_t j = 0; j < p.kw; ++j) tapoff[static_cast<size_t>(r++)] = c * plane + i * p.dh * wpp + j * p.dw;
  std::vector<Segment> segs;
  for (index_t it = 0; it < p.n * p.groups; ++it) {
    const index_t img = it / p.groups, g = it % p.groups;
    const float* gb = bias ? bias + g * pl.kg : nullptr;
    for (index_t s = 0; s < pl.ohw; s += len) {
      const index_t cols = std::min(len, pl.ohw - s), ncp = ceil_div(cols, nr);
      const int nj = narrow_columns(pl, cols, true);
      if (gather) {
        for (index_t t = 0; t < cols; ++t)
          base[static_cast<size_t>(t)] =
              static_cast<std::int32_t>((s + t) / p.ow * p.sh * wpp + (s + t) % p.ow * p.sw);
      } else {
        tile_segments(pl, img * pl.ohw + s, cols, segs);
      }
      float* c = y + (img * p.k + g * pl.kg) * pl.ohw + s;
#pragma omp parallel num_threads(nt) if (nt > 1)
      {
        const index_t T = omp_get_num_threads(), tid = omp_get_thread_num();
        // This thread packs column panels [jp0, jp1).
        const index_t jp0 = ncp * tid / T, jp1 = ncp * (tid + 1) / T;
        if (gather) {
          if (s == 0) {  // the padded image: channels split over the threads
            const index_t c0 = pl.cg * tid / T, c1 = pl.cg * (tid + 1) / T;
            for (index_t ch = c0; ch < c1; ++ch) {
              float* dst = xp.get() + ch * plane;
              const float* src = x + (img * p.c + g * pl.cg + ch) * pl.hw;
              std::fill(dst, dst + plane, 0.0f);
              for (index_t ih = 0; ih < p.h && ih + p.ph < hpp; ++ih)
                std::memcpy(dst + (ih + p.ph) * wpp + p.pw, src + ih * p.w,
                            sizeof(float) * std::max<index_t>(0, std::min(p.w, wpp - p.pw)));
            }
          }
#pragma omp barrier
          pack_gather(pl, xp.get(), tapoff.data(), base.data(), cols, jp0, jp1, b_pack.get());
        } else {
          // Segments are in panel order.
          const auto by_panel = [](const Segment& sg, index_t jp) { return sg.jp < jp; };
          const index_t s0 = std::lower_bound(segs.begin(), segs.end(), jp0, by_panel) - segs.begin();
          const index_t s1 = std::lower_bound(segs.begin(), segs.end(), jp1, by_panel) - segs.begin();
          if (s0 < s1) {
            PackArgs a{&p, x, g, pl.cg, pl.hw, pl.kc, pl.kc_block, nr, cols, segs.data() + s0, s1 - s0, b_pack.get()};
            a.pad_tail = tid == T - 1;
            pl.pack(a);
          }
        }
        if (nj && tid == T - 1) copy_narrow_columns(pl, b_pack.get(), cols, nj, bt.get());
#pragma omp barrier
        const index_t ip0 = npanels * tid / T, ip1 = npanels * (tid + 1) / T;
        if (ip0 < ip1) compute_tile_inplace(pl, w, g, b_pack.get(), bt.get(), nj, cols, ip0, ip1, c, pl.ohw, gb);
      }
    }
  }
}

}  // namespace

bool conv2d_forward_is_direct(const ConvParams& p) {
  if (p.groups > 1 && p.groups == p.c) return false;
  return direct_eligible(Plan(p, direct_for(active_isa())));
}

void conv2d_forward(const ConvParams& p, const float* x, const float* w, const float* bias, float* y) {
  check_conv_params(p);
  if (p.n == 0) return;
  if (p.groups > 1 && p.groups == p.c) return depthwise::forward(p, x, w, bias, y);
  const Plan pl(p);
  const int nt = threads_for(2 * p.n * p.k * pl.ohw * pl.kc, index_t{1} << 20);
  // The direct path wherever it is eligible, batch 1 at 14x14 included: with the rows'
  // shared padding (1 wasted column of 15) and the weight rows split over the threads it
  // matches forward_few at 1x256x14x14 (2 threads 155 vs 156 GFLOP/s; 1 thread 80 vs 82) and
  // beats it at 1x128x14x14 (146 vs 137; 1 thread 78 vs 73).
  // Winograd F(2x2, 3x3) where eligible (2.25x fewer multiplications; see winograd.cpp), unless
  // an output came out non-finite (then the direct way below computes y again).
  if (winograd_eligible(p) && winograd_forward(p, x, w, bias, y, nt)) return;
  const Plan dpl(p, direct_for(active_isa()));
  if (direct_eligible(dpl)) return forward_direct(dpl, x, w, bias, y, nt);
  if (pointwise_eligible(pl))
    return forward_pointwise(Plan(p, direct_for(active_isa(), DirectUse::pointwise)), x, w, bias, y, nt);
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
  // Fewer items than 2 per thread (batch 1 on 2 threads), or one image on one thread.
  if (nt > 1 ? items < 2 * nt : p.n * p.groups == 1) return forward_few(pl, x, w, bias, y, nt);
  AlignedBuffer a_pack(pl.a_group * p.groups);

  if (nt > 1 && items >= 2 * nt) {
    std::vector<AlignedBuffer> b_pack, bt, stage;
    std::vector<std::vector<Segment>> segs(nt);
    for (int t = 0; t < nt; ++t) {
      segs[t].reserve(static_cast<size_t>(2 * widest + 2));
      b_pack.emplace_back(b_size);
      bt.emplace_back(pl.kc * (pl.uk.nr / 2));
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
        run_tile(pl, x, a_pack.get(), w, bias, y, g, t, b_pack[tid].get(), bt[tid].get(), stage[tid].get(), 0, npanels,
                 &my_segs);
        if (t.q0 % pl.ohw + t.cols > pl.ohw) scatter_stage(pl, stage[tid].get(), g, t, 0, pl.kg, y);
      }
    }
    return;
  }

  // Single thread, several images: one tile at a time (multi-image tiles at small maps).
  AlignedBuffer b_pack(b_size), bt(pl.kc * (pl.uk.nr / 2)), stage(stage_size);
  std::vector<Segment> segs;
  for (index_t it = 0; it < items; ++it) {
    const index_t g = it / ntiles;
    const TileSpec& t = tiles[it % ntiles];
    pack_b_tile(pl, x, g, t.q0, t.cols, segs, b_pack.get());
    if (const int nj = narrow_columns(pl, t.cols, false)) copy_narrow_columns(pl, b_pack.get(), t.cols, nj, bt.get());
    const bool staged = t.q0 % pl.ohw + t.cols > pl.ohw;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      const index_t T = omp_get_num_threads(), tid = omp_get_thread_num();
      const index_t ip0 = npanels * tid / T, ip1 = npanels * (tid + 1) / T;
      if (ip0 < ip1) {
        if (it % ntiles == 0) pack_a_panels(pl, w, g, ip0, ip1, a_pack.get());  // group g's first tile
        run_tile(pl, x, a_pack.get(), w, bias, y, g, t, b_pack.get(), bt.get(), stage.get(), ip0, ip1, nullptr);
        if (staged) scatter_stage(pl, stage.get(), g, t, ip0 * pl.uk.mr, std::min(pl.kg, ip1 * pl.uk.mr), y);
      }
    }
  }
}

}  // namespace fl
