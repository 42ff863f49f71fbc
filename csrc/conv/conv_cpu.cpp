// conv2d backward on the GEMM engine (the forward is conv_forward.cpp): chunked im2col,
// never a whole-batch buffer.
//
// Per group g the convolution is Y_g (Kg x pixels) = W_g (Kg x Kc) * col_g (Kc x pixels) with
// Kc = C/groups * R * S. The pixel axis (n, oh, ow) is cut into tiles: either a run of whole
// images (small feature maps: 7x7 layers get 8 images' worth of columns per GEMM instead of
// 49) or a band of output rows of one image (large maps). Each tile's columns are built in a
// per-thread buffer of at most max(2^18, Kc * OW) floats (1 MiB at the ResNet sizes; a single
// output row is the floor), plus a Kg x tile staging buffer for multi-image tiles. So the
// workspace is bounded per thread, independent of the batch size.
//
// - Backward data, stride 1 (where the result runs on the direct or depthwise forward
//   kernels): a forward convolution of gy with the weights transposed per group and flipped.
// - Backward data, otherwise: columns W_g^T gy (through strides, no transpose copy), then
//   col2im adds them into gx. Tiles of one image overlap in gx, so the parallel unit is
//   (group, image or image run). 1x1 / stride 1 / no padding writes gx directly.
// - Backward weight: gw_g += gy_tile col_tile^T, with one private accumulator per thread
//   (summed at the end) when nt * |w| <= 2^24 floats, else the threaded GEMM accumulates
//   straight into gw. 1x1 / stride 1 reads x through strides (no im2col).
// - groups == C (depthwise): direct loops in depthwise_impl.h instead (a GEMM with Kc = 9
//   would be all packing and no arithmetic).
// - Threading: tiles (x groups) run in an OpenMP loop, each calling the GEMM single-threaded,
//   when there are at least 2 per thread; otherwise the tiles run in order with the GEMM
//   itself threaded.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "conv/conv.h"
#include "core/parallel.h"
#include "gemm/gemm.h"

namespace fl {
namespace {

constexpr index_t kColBudget = index_t{1} << 18;       // floats of im2col columns per thread
constexpr index_t kPrivateWeightBudget = index_t{1} << 24;  // floats of per-thread gw copies

index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

// Images [n0, n0 + nb); when nb == 1 only output rows [r0, r1).
struct Tile {
  index_t n0, nb, r0, r1;
};

struct Geometry {
  index_t cg, kg, kc, hw, ohw;
  bool pointwise;  // 1x1, stride 1, no padding: columns = the input plane itself
};

Geometry geometry(const ConvParams& p) {
  Geometry g;
  g.cg = p.c / p.groups;
  g.kg = p.k / p.groups;
  g.kc = g.cg * p.kh * p.kw;
  g.hw = p.h * p.w;
  g.ohw = p.oh * p.ow;
  g.pointwise = p.kh == 1 && p.kw == 1 && p.sh == 1 && p.sw == 1 && p.ph == 0 && p.pw == 0 &&
                p.oh == p.h && p.ow == p.w;
  return g;
}

index_t tile_cols(const ConvParams& p, const Tile& t) {
  return t.nb == 1 ? (t.r1 - t.r0) * p.ow : t.nb * p.oh * p.ow;
}

std::vector<Tile> make_tiles(const ConvParams& p, index_t max_cols) {
  std::vector<Tile> tiles;
  const index_t ohw = p.oh * p.ow;
  if (ohw <= max_cols) {
    const index_t nb = std::max<index_t>(1, max_cols / ohw);
    for (index_t n0 = 0; n0 < p.n; n0 += nb) tiles.push_back({n0, std::min(nb, p.n - n0), 0, p.oh});
  } else {
    const index_t rows = std::max<index_t>(1, max_cols / p.ow);
    for (index_t n0 = 0; n0 < p.n; ++n0)
      for (index_t r0 = 0; r0 < p.oh; r0 += rows) tiles.push_back({n0, 1, r0, std::min(r0 + rows, p.oh)});
  }
  return tiles;
}

// Columns per tile: the workspace budget, shrunk so that there are ~4 tiles per thread to
// balance, but not below 128 columns (narrower GEMMs lose more to packing than threads gain).
index_t choose_max_cols(const ConvParams& p, const Geometry& g, int nt) {
  const index_t budget = std::max<index_t>(kColBudget / std::max<index_t>(g.kc, 1), p.ow);
  const index_t balance = ceil_div(p.n * g.ohw * p.groups, 4 * static_cast<index_t>(nt));
  return std::max<index_t>(p.ow, std::min(budget, std::max<index_t>(128, balance)));
}

// The valid output-column range [lo, hi) of a tap at input offset `off` (iw = ow*s + off).
inline void valid_range(index_t off, index_t s, index_t in, index_t out, index_t& lo, index_t& hi) {
  lo = off >= 0 ? 0 : ceil_div(-off, s);
  hi = in - 1 - off >= 0 ? (in - 1 - off) / s + 1 : 0;
  lo = std::min(lo, out);
  hi = std::max(lo, std::min(hi, out));
}

// col (Kc x cols, row stride ldcol) = the columns of tile t for group g.
void im2col_tile(const ConvParams& p, const Geometry& g, const float* x, index_t grp, const Tile& t, float* col,
                 index_t ldcol) {
  for (index_t img = t.n0; img < t.n0 + t.nb; ++img) {
    const index_t base = (img - t.n0) * g.ohw;
    const float* xg = x + (img * p.c + grp * g.cg) * g.hw;
    for (index_t c = 0; c < g.cg; ++c) {
      for (index_t i = 0; i < p.kh; ++i) {
        for (index_t j = 0; j < p.kw; ++j) {
          float* dst = col + ((c * p.kh + i) * p.kw + j) * ldcol + base;
          const index_t off = j * p.dw - p.pw;
          index_t lo, hi;
          valid_range(off, p.sw, p.w, p.ow, lo, hi);
          for (index_t oh = t.r0; oh < t.r1; ++oh) {
            float* d = dst + (oh - t.r0) * p.ow;
            const index_t ih = oh * p.sh - p.ph + i * p.dh;
            if (ih < 0 || ih >= p.h) {
              std::fill(d, d + p.ow, 0.0f);
              continue;
            }
            const float* src = xg + c * g.hw + ih * p.w + off;
            std::fill(d, d + lo, 0.0f);
            if (p.sw == 1) {
              if (hi > lo) std::memcpy(d + lo, src + lo, sizeof(float) * (hi - lo));
            } else {
              for (index_t ow = lo; ow < hi; ++ow) d[ow] = src[ow * p.sw];
            }
            std::fill(d + hi, d + p.ow, 0.0f);
          }
        }
      }
    }
  }
}

// gx (group g, images of tile t) += col2im(col): the adjoint of im2col_tile.
void col2im_tile(const ConvParams& p, const Geometry& g, const float* col, index_t ldcol, index_t grp,
                 const Tile& t, float* gx) {
  for (index_t img = t.n0; img < t.n0 + t.nb; ++img) {
    const index_t base = (img - t.n0) * g.ohw;
    float* xg = gx + (img * p.c + grp * g.cg) * g.hw;
    for (index_t c = 0; c < g.cg; ++c) {
      for (index_t i = 0; i < p.kh; ++i) {
        for (index_t j = 0; j < p.kw; ++j) {
          const float* src = col + ((c * p.kh + i) * p.kw + j) * ldcol + base;
          const index_t off = j * p.dw - p.pw;
          index_t lo, hi;
          valid_range(off, p.sw, p.w, p.ow, lo, hi);
          for (index_t oh = t.r0; oh < t.r1; ++oh) {
            const index_t ih = oh * p.sh - p.ph + i * p.dh;
            if (ih < 0 || ih >= p.h) continue;
            const float* s = src + (oh - t.r0) * p.ow;
            float* d = xg + c * g.hw + ih * p.w + off;
            if (p.sw == 1) {
#pragma omp simd
              for (index_t ow = lo; ow < hi; ++ow) d[ow] += s[ow];
            } else {
              for (index_t ow = lo; ow < hi; ++ow) d[ow * p.sw] += s[ow];
            }
          }
        }
      }
    }
  }
}

// Copy rows [ch0, ch0 + rows) of the (N, Ctot, OHW) tensor for the images of t into a
// (rows x nb*OHW) matrix, and back.
void gather_rows(const float* src, index_t ctot, index_t ch0, index_t rows, index_t ohw, const Tile& t, float* dst) {
  const index_t ld = t.nb * ohw;
  for (index_t img = t.n0; img < t.n0 + t.nb; ++img)
    for (index_t r = 0; r < rows; ++r)
      std::memcpy(dst + r * ld + (img - t.n0) * ohw, src + (img * ctot + ch0 + r) * ohw, sizeof(float) * ohw);
}

// Per-thread workspace, allocated before any parallel region (no allocation, hence no
// exception, inside one).
struct Workspace {
  std::vector<std::vector<float>> col, tmp;
  Workspace(int nt, index_t col_size, index_t tmp_size) : col(nt), tmp(nt) {
    for (int i = 0; i < nt; ++i) {
      col[i].resize(static_cast<size_t>(std::max<index_t>(col_size, 1)));
      tmp[i].resize(static_cast<size_t>(std::max<index_t>(tmp_size, 1)));
    }
  }
};

bool is_depthwise(const ConvParams& p) { return p.groups > 1 && p.groups == p.c; }

int conv_threads(const ConvParams& p, const Geometry& g) {
  return threads_for(2 * p.n * p.k * g.ohw * g.kc, index_t{1} << 20);
}

// ---- backward data --------------------------------------------------------------------------

void backward_data_tile(const ConvParams& p, const Geometry& g, const float* gy, const float* w, const float* bias,
                        float* gx, index_t grp, const Tile& t, float* col, float* tmp) {
  const index_t cols = tile_cols(p, t);
  GemmParams q;
  q.m = g.kc;
  q.n = cols;
  q.k = g.kg;
  q.a = w + grp * g.kg * g.kc;  // A(i, p) = W_g(p, i): the transpose through strides
  q.a_rs = 1;
  q.a_cs = g.kc;
  if (t.nb == 1) {
    q.b = gy + (t.n0 * p.k + grp * g.kg) * g.ohw + t.r0 * p.ow;
    q.b_rs = g.ohw;
  } else {
    gather_rows(gy, p.k, grp * g.kg, g.kg, g.ohw, t, tmp);
    q.b = tmp;
    q.b_rs = cols;
  }
  q.b_cs = 1;
  if (g.pointwise && t.nb == 1) {
    // Each input pixel is hit by exactly one output pixel: write gx directly, bias included.
    q.c = gx + (t.n0 * p.c + grp * g.cg) * g.hw + t.r0 * p.ow;
    q.ldc = g.hw;
    q.row_bias = bias ? bias + grp * g.cg : nullptr;
    run_gemm(q);
    return;
  }
  q.c = col;
  q.ldc = cols;
  run_gemm(q);
  col2im_tile(p, g, col, cols, grp, t, gx);
}

// Zero (or set to the bias) the gx planes of group grp for images [n0, n0 + nb).
void init_gx(const ConvParams& p, const Geometry& g, const float* bias, float* gx, index_t grp, index_t n0,
             index_t nb) {
  for (index_t img = n0; img < n0 + nb; ++img)
    for (index_t c = 0; c < g.cg; ++c) {
      float* d = gx + (img * p.c + grp * g.cg + c) * g.hw;
      std::fill(d, d + g.hw, bias ? bias[grp * g.cg + c] : 0.0f);
    }
}

// ---- backward weight ------------------------------------------------------------------------

void backward_weight_tile(const ConvParams& p, const Geometry& g, const float* gy, const float* x, float* acc,
                          index_t grp, const Tile& t, float* col, float* tmp) {
  const index_t cols = tile_cols(p, t);
  GemmParams q;
  q.m = g.kg;
  q.n = g.kc;
  q.k = cols;
  if (t.nb == 1) {
    q.a = gy + (t.n0 * p.k + grp * g.kg) * g.ohw + t.r0 * p.ow;
    q.a_rs = g.ohw;
  } else {
    gather_rows(gy, p.k, grp * g.kg, g.kg, g.ohw, t, tmp);
    q.a = tmp;
    q.a_rs = cols;
  }
  q.a_cs = 1;
  if (g.pointwise && t.nb == 1) {
    q.b = x + (t.n0 * p.c + grp * g.cg) * g.hw + t.r0 * p.ow;  // B(pixel, c) = x[c*HW + pixel]
    q.b_cs = g.hw;
  } else {
    im2col_tile(p, g, x, grp, t, col, cols);
    q.b = col;  // B(pixel, r) = col[r*cols + pixel]
    q.b_cs = cols;
  }
  q.b_rs = 1;
  q.c = acc + grp * g.kg * g.kc;
  q.ldc = g.kc;
  q.beta = 1.0f;
  run_gemm(q);
}

void bias_grad(const ConvParams& p, const float* gy, float* gb) {
  const index_t ohw = p.oh * p.ow;
  parallel_for(p.k, 16, [&](index_t k0, index_t k1) {
    for (index_t k = k0; k < k1; ++k) {
      double s = 0.0;  // N*OH*OW terms: double keeps the sum exact enough for any batch
      for (index_t n = 0; n < p.n; ++n) {
        const float* src = gy + (n * p.k + k) * ohw;
        float part = 0.0f;
#pragma omp simd reduction(+ : part)
        for (index_t i = 0; i < ohw; ++i) part += src[i];
        s += part;
      }
      gb[k] = static_cast<float>(s);
    }
  });
}

}  // namespace

void check_conv_params(const ConvParams& p) {
  FL_CHECK(p.n >= 0 && p.c >= 1 && p.h >= 1 && p.w >= 1 && p.k >= 1 && p.oh >= 1 && p.ow >= 1,
           "conv: invalid sizes N=", p.n, " C=", p.c, " H=", p.h, " W=", p.w, " K=", p.k, " OH=", p.oh, " OW=", p.ow);
  FL_CHECK(p.kh >= 1 && p.kw >= 1 && p.sh >= 1 && p.sw >= 1 && p.dh >= 1 && p.dw >= 1 && p.ph >= 0 && p.pw >= 0,
           "conv: invalid kernel/stride/dilation/padding");
  FL_CHECK(p.groups >= 1 && p.c % p.groups == 0 && p.k % p.groups == 0, "conv: channels C=", p.c, " K=", p.k,
           " are not divisible by groups=", p.groups);
}

void conv2d_backward_data(const ConvParams& p, const float* gy, const float* w, const float* bias, float* gx) {
  check_conv_params(p);
  if (p.n == 0) return;
  ConvParams q = p;  // the data gradient as a forward convolution (stride 1 only)
  q.c = p.k;
  q.h = p.oh;
  q.w = p.ow;
  q.k = p.c;
  q.oh = p.h;
  q.ow = p.w;
  q.ph = p.dh * (p.kh - 1) - p.ph;
  q.pw = p.dw * (p.kw - 1) - p.pw;
  if (p.sh == 1 && p.sw == 1 && p.kh * p.kw > 1 && q.ph >= 0 && q.pw >= 0 &&
      ((q.groups > 1 && q.groups == q.c) || conv2d_forward_is_direct(q) || (p.n >= 4 && q.oh * q.ow <= 64))) {
    // Stride 1: the data gradient is itself a stride-1 convolution of gy, with the weights
    // transposed per group and flipped and padding d*(R-1) - p. Where that convolution takes
    // the direct or depthwise kernels it beats GEMM + col2im (depthwise 128x56x56: 1.7x);
    // so it does on batched maps of <= 64 pixels, where the forward packs several images
    // per tile and takes their narrow last columns as dot products (backward at 8x512x7x7,
    // 1 thread: 0.87-0.91x the time; 2 images: 1.04x, so not below 4). Elsewhere (14x14:
    // equal) the col2im path stays.
    const Geometry g = geometry(p);
    const index_t taps = p.kh * p.kw;
    std::vector<float> wt(static_cast<size_t>(p.c * g.kg * taps));
    // The forward kernels multiply the padding's zeros by the weights, where the data
    // gradient (and conv_transpose2d) has no such terms: an Inf weight would make NaN of
    // outputs that the col2im path below (real products only) leaves finite. So a weight
    // that is not finite, seen during this copy, sends the call there.
    bool finite = true;
    for (index_t grp = 0; grp < p.groups; ++grp)
      for (index_t k = 0; k < g.kg; ++k)
        for (index_t c = 0; c < g.cg; ++c)
          for (index_t t = 0; t < taps; ++t) {
            const float v = w[((grp * g.kg + k) * g.cg + c) * taps + t];
            finite &= std::isfinite(v);
            wt[static_cast<size_t>(((grp * g.cg + c) * g.kg + k) * taps + (taps - 1 - t))] = v;
          }
    if (finite) return conv2d_forward(q, gy, wt.data(), bias, gx);
  }
  if (is_depthwise(p)) return depthwise::backward_data(p, gy, w, bias, gx);
  const Geometry g = geometry(p);
  const int nt = conv_threads(p, g);
  const index_t max_cols = choose_max_cols(p, g, nt);
  const std::vector<Tile> tiles = make_tiles(p, max_cols);
  const index_t max_tile = std::max(max_cols, p.ow);
  // Units that own disjoint parts of gx: (group, tile) for whole-image tiles, else
  // (group, image) with that image's row bands done in order.
  const bool whole = tiles.front().nb > 1 || (tiles.front().r0 == 0 && tiles.front().r1 == p.oh);
  const index_t per_img = whole ? 1 : static_cast<index_t>(tiles.size()) / p.n;
  const index_t units = (whole ? static_cast<index_t>(tiles.size()) : p.n) * p.groups;
  const index_t nunit_g = units / p.groups;
  const bool outer = nt > 1 && units >= 2 * nt;
  Workspace ws(outer ? nt : 1, g.kc * max_tile, g.kg * max_tile);
  auto run_unit = [&](index_t u, float* col, float* tmp) {
    const index_t grp = u / nunit_g, j = u % nunit_g;
    const index_t first = whole ? j : j * per_img;
    const Tile& t0 = tiles[first];
    if (!(g.pointwise && t0.nb == 1)) init_gx(p, g, bias, gx, grp, t0.n0, t0.nb);
    for (index_t ti = first; ti < first + per_img; ++ti) backward_data_tile(p, g, gy, w, bias, gx, grp, tiles[ti], col, tmp);
  };
  if (outer) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (index_t u = 0; u < units; ++u) {
      const int tid = omp_get_thread_num();
      run_unit(u, ws.col[tid].data(), ws.tmp[tid].data());
    }
  } else {
    for (index_t u = 0; u < units; ++u) run_unit(u, ws.col[0].data(), ws.tmp[0].data());
  }
}

void conv2d_backward_weight(const ConvParams& p, const float* gy, const float* x, float* gw, float* gb) {
  check_conv_params(p);
  const Geometry g = geometry(p);
  const index_t wsize = p.k * g.kc;
  if (gb) {
    if (p.n == 0)
      std::fill(gb, gb + p.k, 0.0f);
    else
      bias_grad(p, gy, gb);
  }
  if (!gw) return;
  if (p.n == 0) {
    std::fill(gw, gw + wsize, 0.0f);
    return;
  }
  if (is_depthwise(p)) return depthwise::backward_weight(p, gy, x, gw);
  const int nt = conv_threads(p, g);
  const index_t max_cols = choose_max_cols(p, g, nt);
  const std::vector<Tile> tiles = make_tiles(p, max_cols);
  const index_t ntiles = static_cast<index_t>(tiles.size());
  const index_t items = ntiles * p.groups;
  const index_t max_tile = std::max(max_cols, p.ow);
  const bool outer = nt > 1 && items >= 2 * nt && nt * wsize <= kPrivateWeightBudget;
  if (!outer) {
    Workspace ws(1, g.kc * max_tile, g.kg * max_tile);
    std::fill(gw, gw + wsize, 0.0f);
    for (index_t it = 0; it < items; ++it)
      backward_weight_tile(p, g, gy, x, gw, it / ntiles, tiles[it % ntiles], ws.col[0].data(), ws.tmp[0].data());
    return;
  }
  Workspace ws(nt, g.kc * max_tile, g.kg * max_tile);
  std::vector<std::vector<float>> acc(nt, std::vector<float>(static_cast<size_t>(wsize), 0.0f));
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
    for (index_t it = 0; it < items; ++it)
      backward_weight_tile(p, g, gy, x, acc[tid].data(), it / ntiles, tiles[it % ntiles], ws.col[tid].data(),
                           ws.tmp[tid].data());
#pragma omp for schedule(static)
    for (index_t i = 0; i < wsize; ++i) {
      float s = 0.0f;
      for (int t = 0; t < nt; ++t) s += acc[t][i];
      gw[i] = s;
    }
  }
}

}  // namespace fl
