// CPU emulation of csrc/rnn/rnn.cu's rnn_step_kernel: every block and thread of a launch with
// the kernel's mapping (tid = group*8 + k-lane, group = (row quad, batch group), float4 or
// scalar k interleave, the 8-lane shuffle sum as a sum over the lanes, the shared tile, the
// epilogue loop), calling the kernel's own row mapping and epilogues (csrc/rnn/rnn_step.cuh),
// against a direct double-precision step. Checks that every (row, batch) cell of the tile is
// written exactly once and every output element of the step exactly once. No GPU needed:
//   nvcc -std=c++17 -O2 -Icsrc -o /tmp/emu_rnn bench/gpu/emulate_rnn_step.cu && /tmp/emu_rnn
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/cuda_math.cuh"
#include "rnn/rnn_step.cuh"

using namespace fl::cuda;

static std::mt19937 rng(11);
static std::vector<float> randv(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (auto& e : v) e = nd(rng);
  return v;
}

// One emulated launch. Returns false on a coverage error.
template <int KIND>
static bool launch(const StepArgs& a, int BPT, bool VEC) {
  constexpr int BU = step_units<KIND>();
  const int BB = 4 * BPT;
  const int gx = (a.H + BU - 1) / BU, gy = (a.B + BB - 1) / BB;
  for (int by = 0; by < gy; ++by)
    for (int bx = 0; bx < gx; ++bx) {
      const int u0 = bx * BU, b0 = by * BB;
      std::vector<double> S(32 * BB, 0.0);
      std::vector<int> written(32 * BB, 0);
      if (a.X) {
        std::vector<double> part(size_t(256) * 4 * BPT, 0.0);
        for (int tid = 0; tid < 256; ++tid) {
          const int ks = tid & 7, og = tid >> 3, rq = og & 7, bp = og >> 3;
          for (int i = 0; i < 4; ++i) {
            const int row = step_w_row<KIND>(u0, rq * 4 + i, a.H);
            const float* w = a.W + size_t(row < 0 ? 0 : row) * a.K;
            for (int j = 0; j < BPT; ++j) {
              const int b = b0 + bp * BPT + j;
              const float* x = a.X + size_t(b < a.B ? b : 0) * a.ldx;
              double acc = 0.0;
              if (VEC) {
                for (int k = ks * 4; k < a.K; k += 32)
                  for (int q = 0; q < 4; ++q) acc += double(w[k + q]) * x[k + q];
              } else {
                for (int k = ks; k < a.K; k += 8) acc += double(w[k]) * x[k];
              }
              part[(size_t(tid) * 4 + i) * BPT + j] = acc;
            }
          }
        }
        for (int tid = 0; tid < 256; ++tid) {  // lanes ks = 0..7 of a group meet (xor 1, 2, 4)
          const int ks = tid & 7, og = tid >> 3, rq = og & 7, bp = og >> 3;
          if (ks != 0) continue;
          for (int i = 0; i < 4; ++i)
            for (int j = 0; j < BPT; ++j) {
              double v = 0.0;
              for (int l = 0; l < 8; ++l) v += part[(size_t(tid + l) * 4 + i) * BPT + j];
              S[(rq * 4 + i) * BB + bp * BPT + j] = v;
              written[(rq * 4 + i) * BB + bp * BPT + j]++;
            }
        }
        for (int e = 0; e < 32 * BB; ++e)
          if (written[e] != 1) { std::printf("FAIL: tile cell %d written %d times\n", e, written[e]); return false; }
      }
      for (int tid = 0; tid < 256; ++tid)
        for (int e = tid; e < BU * BB; e += 256) {
          const int u = e % BU, bl = e / BU;
          const int b = b0 + bl, unit = u0 + u;
          if (b >= a.B || unit >= a.H) continue;
          float sv[4] = {0, 0, 0, 0};
          for (int g = 0; g < (KIND == kFwdLstm ? 4 : 1); ++g) sv[g] = float(S[(g * BU + u) * BB + bl]);
          step_epilogue<KIND>(a, sv, b, unit);
        }
    }
  return true;
}

static double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }

static double maxdiff(const std::vector<float>& got, const std::vector<double>& want) {
  double e = 0, sc = 1e-30;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i])) return INFINITY;  // an element never written
    e = std::max(e, std::fabs(got[i] - want[i]));
    sc = std::max(sc, std::fabs(want[i]));
  }
  return e / sc;
}

static bool run(int B, int H, int BPT, bool VEC, bool with_x, int mode) {
  const int G = mode == 0 ? 4 : 1, GH = G * H;
  bool ok = true;
  const float NaN = NAN;
  // ---- forward step ----
  {
    const int ldh = H + 3;  // h rows inside a wider y (another direction's columns)
    auto W = randv(size_t(GH) * H, 0.3f), X = randv(size_t(B) * ldh), xg = randv(size_t(B) * GH), bhh = randv(GH),
         cprev = randv(size_t(B) * H);
    std::vector<float> c_out(size_t(B) * H, NaN), h_out(size_t(B) * ldh, NaN), gates(size_t(B) * 4 * H, NaN);
    StepArgs a{};
    a.mode = mode; a.B = B; a.H = H; a.K = H;
    a.X = with_x ? X.data() : nullptr; a.ldx = ldh; a.W = W.data();
    a.xg = xg.data(); a.b_hh = bhh.data(); a.c_prev = cprev.data(); a.c_out = c_out.data();
    a.h_out = h_out.data(); a.ldh = ldh; a.gates = mode == 0 ? gates.data() : nullptr;
    ok &= mode == 0 ? launch<kFwdLstm>(a, BPT, VEC) : launch<kFwdRnn>(a, BPT, VEC);
    std::vector<double> rh(size_t(B) * H), rc(size_t(B) * H), rg(size_t(B) * 4 * H);
    std::vector<float> gh(size_t(B) * H);
    for (int b = 0; b < B; ++b)
      for (int u = 0; u < H; ++u) {
        double pre[4];
        for (int g = 0; g < G; ++g) {
          double s = 0;
          if (with_x)
            for (int k = 0; k < H; ++k) s += double(W[size_t(g * H + u) * H + k]) * X[size_t(b) * ldh + k];
          pre[g] = s + xg[size_t(b) * GH + g * H + u] + bhh[g * H + u];
        }
        if (mode == 0) {
          const double i = sig(pre[0]), f = sig(pre[1]), gg = std::tanh(pre[2]), o = sig(pre[3]);
          const double c = f * cprev[size_t(b) * H + u] + i * gg;
          rc[size_t(b) * H + u] = c;
          rh[size_t(b) * H + u] = o * std::tanh(c);
          const double gv[4] = {i, f, gg, o};
          for (int g = 0; g < 4; ++g) rg[size_t(b) * 4 * H + g * H + u] = gv[g];
        } else {
          rh[size_t(b) * H + u] = mode == 1 ? std::tanh(pre[0]) : std::max(pre[0], 0.0);
        }
        gh[size_t(b) * H + u] = h_out[size_t(b) * ldh + u];
      }
    double e = maxdiff(gh, rh);
    if (mode == 0) e = std::max({e, maxdiff(c_out, rc), maxdiff(gates, rg)});
    if (!(e < 1e-5)) { std::printf("  forward mode %d: err %.3g\n", mode, e); ok = false; }
  }
  // ---- backward step (has_step) and the last launch (dh0 / dc0) ----
  for (int last = 0; last < 2; ++last) {
    const int ldy = H + 5;
    auto WT = randv(size_t(H) * GH, 0.3f), X = randv(size_t(B) * GH), dy = randv(size_t(B) * ldy),
         add = randv(size_t(B) * H), dc_in = randv(size_t(B) * H), cp = randv(size_t(B) * H), ct = randv(size_t(B) * H),
         ht = randv(size_t(B) * ldy, 0.5f);
    std::vector<float> gt(size_t(B) * 4 * H);
    for (auto& v : gt) v = float(sig(randv(1)[0]));
    std::vector<float> dg(size_t(B) * GH, NaN), dc = dc_in, dh0(size_t(B) * H, NaN), dc0(size_t(B) * H, NaN);
    StepArgs a{};
    a.mode = mode; a.B = B; a.H = H; a.K = GH;
    a.X = with_x ? X.data() : nullptr; a.ldx = GH; a.W = WT.data();
    a.add = add.data(); a.has_step = !last; a.dy = dy.data(); a.h_t = ht.data(); a.ldy = ldy;
    a.g_t = gt.data(); a.c_t = ct.data(); a.cp_t = cp.data(); a.dg = dg.data(); a.dc = dc.data();
    a.dh0 = dh0.data(); a.dc0 = mode == 0 ? dc0.data() : nullptr;
    ok &= launch<kBwd>(a, BPT, VEC);
    std::vector<double> rdg(size_t(B) * GH), rdc(size_t(B) * H), rdh0(size_t(B) * H);
    for (int b = 0; b < B; ++b)
      for (int u = 0; u < H; ++u) {
        double s = 0;
        if (with_x)
          for (int k = 0; k < GH; ++k) s += double(WT[size_t(u) * GH + k]) * X[size_t(b) * GH + k];
        s += add[size_t(b) * H + u];
        const size_t bh = size_t(b) * H + u;
        rdh0[bh] = s;
        rdc[bh] = dc_in[bh];
        if (last) continue;
        const double dh = s + dy[size_t(b) * ldy + u];
        if (mode == 0) {
          const double i = gt[b * 4 * H + u], f = gt[b * 4 * H + H + u], g = gt[b * 4 * H + 2 * H + u],
                       o = gt[b * 4 * H + 3 * H + u];
          const double tc = std::tanh(double(ct[bh]));
          const double dcv = dc_in[bh] + dh * o * (1 - tc * tc);
          rdg[b * 4 * H + u] = dcv * g * i * (1 - i);
          rdg[b * 4 * H + H + u] = dcv * cp[bh] * f * (1 - f);
          rdg[b * 4 * H + 2 * H + u] = dcv * i * (1 - g * g);
          rdg[b * 4 * H + 3 * H + u] = dh * tc * o * (1 - o);
          rdc[bh] = dcv * f;
        } else {
          const double h = ht[size_t(b) * ldy + u];
          rdg[bh] = dh * (mode == 1 ? 1 - h * h : (h > 0 ? 1.0 : 0.0));
        }
      }
    double e;
    if (last) {
      e = maxdiff(dh0, rdh0);
      if (mode == 0) e = std::max(e, maxdiff(dc0, rdc));
    } else {
      e = std::max(maxdiff(dg, rdg), mode == 0 ? maxdiff(dc, rdc) : 0.0);
    }
    if (!(e < 1e-5)) { std::printf("  backward mode %d last %d: err %.3g\n", mode, last, e); ok = false; }
  }
  return ok;
}

int main() {
  int failed = 0;
  const int shapes[][2] = {{1, 5}, {3, 8}, {9, 33}, {33, 17}, {40, 64}, {8, 12}, {65, 36}};
  for (auto& sh : shapes)
    for (int bpt : {2, 8})
      for (int vec = 0; vec < 2; ++vec) {
        if (vec && sh[1] % 4) continue;  // the host picks VEC only for H % 4 == 0 (and aligned rows)
        for (int mode = 0; mode < 3; ++mode)
          for (int with_x = 0; with_x < 2; ++with_x) {
            const bool ok = run(sh[0], sh[1], bpt, vec, with_x, mode);
            if (!ok) std::printf("FAIL B=%d H=%d bpt=%d vec=%d mode=%d x=%d\n", sh[0], sh[1], bpt, vec, mode, with_x);
            failed += !ok;
          }
      }
  std::printf(failed ? "SOME FAILED (%d)\n" : "ALL OK (%d failures)\n", failed);
  return failed ? 1 : 0;
}
