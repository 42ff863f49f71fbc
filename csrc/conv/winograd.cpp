// Winograd F(2x2, 3x3) for the 3x3 stride-1 convolutions (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2015): each 2x2 block of outputs is computed from a 4x4
// input tile with 16 multiplications per (input, output) channel pair instead of 36.
//
//   Y = A^T [ U (.) V ] A,  U = G g G^T (4x4 from the 3x3 weights g),  V = B^T d B (4x4 tile d)
//
// summed over the input channels: for each of the 16 positions e of the 4x4 transformed
// tile, M_e (K x T) = U_e (K x C) * V_e (C x T), T = the image's tiles: 16 GEMMs of the
// engine (run_gemm) carry the 2.25x fewer FLOPs, and the transforms are O(C + K) per tile.
//
// Accuracy: the transforms add and subtract at most 4 terms (and halve, exactly), so the
// result differs from the direct sum by a few float32 roundings of terms of the same size:
// the tests hold it to the same 1e-4 relative bound as the other paths.
//
// Workspace: U 16*K*C floats, V 16*C*T and M 16*K*T for T tiles of a band of tile rows
// (<= 4 MiB each; the batch runs image by image, band by band), kept between calls
// (core/workspace.h).
#include "conv/winograd.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "core/cpu_features.h"
#include "core/parallel.h"
#include "core/workspace.h"
#include "gemm/gemm.h"

namespace fl {
namespace {

using winograd::Geometry;
using winograd::kTile;

Geometry geometry(const ConvParams& p) {
  Geometry g;
  g.th = (p.oh + 1) / 2;
  g.tw = (p.ow + 1) / 2;
  // Bands of tile rows with V and M of <= 4 MiB each (1M floats): a 64-channel 224x224 map
  // would otherwise take 51 MB of each.
  const index_t max_tiles = std::max<index_t>(g.tw, (index_t{1} << 20) / (kTile * std::max(p.c, p.k)));
  g.band = std::min(g.th, max_tiles / g.tw);
  g.wt = 2 * g.tw + 2;
  // input: a padded row + 16 half rows; output: 4 rows of tw; weights: 9 + 12 arrays of C.
  g.scratch = std::max(g.wt + 16 * (g.tw + 1), 21 * p.c);
  return g;
}

winograd::Transforms transforms() {
#if defined(FASTLAYERS_X86)
  if (active_isa() != Isa::generic) return winograd::transforms_avx2();  // AVX2 or AVX-512
#endif
  return winograd::transforms_generic();
}

}  // namespace

bool winograd_eligible(const ConvParams& p) {
  if (!(p.kh == 3 && p.kw == 3 && p.sh == 1 && p.sw == 1 && p.dh == 1 && p.dw == 1 && p.groups == 1)) return false;
  // Where the 16 GEMMs are big enough to run near the micro-kernel's peak (see the header).
  return p.c >= 32 && p.k >= 32 && p.oh * p.ow >= 196;
}

bool winograd_forward(const ConvParams& p, const float* x, const float* w, const float* bias, float* y, int nt) {
  const Geometry gm = geometry(p);
  const winograd::Transforms tf = transforms();
  const index_t C = p.c, K = p.k, T = gm.band * gm.tw;  // tiles of a full band
  thread_local Workspace ws;
  float* const u = ws.get(0, kTile * K * C);
  float* const v = ws.get(1, kTile * C * T);
  float* const m = ws.get(2, kTile * K * T);
  std::vector<float*> scratch;
  for (int t = 0; t < nt; ++t) scratch.push_back(ws.get(3 + static_cast<size_t>(t), gm.scratch));
  std::atomic<bool> finite{true};
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const index_t Tn = omp_get_num_threads(), tid = omp_get_thread_num();
    tf.weights(p, w, K * tid / Tn, K * (tid + 1) / Tn, u, scratch[tid]);
    for (index_t n = 0; n < p.n; ++n)
      for (index_t ty0 = 0; ty0 < gm.th; ty0 += gm.band) {
        const index_t ty1 = std::min(gm.th, ty0 + gm.band), tb = (ty1 - ty0) * gm.tw;
        tf.input(p, gm, x + n * C * p.h * p.w, C * tid / Tn, C * (tid + 1) / Tn, ty0, ty1, v, scratch[tid]);
#pragma omp barrier  // U (first pass) and V complete
#pragma omp for schedule(static)
        for (int e = 0; e < kTile; ++e) {
          GemmParams g;
          g.m = K;
          g.n = tb;
          g.k = C;
          g.a = u + e * K * C;
          g.a_rs = C;
          g.b = v + e * C * tb;
          g.b_rs = tb;
          g.c = m + e * K * tb;
          g.ldc = tb;
          g.num_threads = 1;
          run_gemm(g);
        }  // (implicit barrier: M complete)
        if (!tf.output(p, gm, m, bias, K * tid / Tn, K * (tid + 1) / Tn, ty0, ty1, y + n * K * p.oh * p.ow,
                       scratch[tid]))
          finite.store(false, std::memory_order_relaxed);
#pragma omp barrier  // before the next pass overwrites V and M
      }
  }
  return finite.load();
}

}  // namespace fl
