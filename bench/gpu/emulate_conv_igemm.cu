// CPU emulation of conv.cu's implicit-GEMM engine with the very loaders and epilogues the
// kernels use (csrc/conv/conv_igemm.cuh, compiled here as host code): every block and thread
// of the launch is run sequentially - loaders fill the emulated shared tiles in the kernel's
// thread roles, each thread multiplies its 8x8 sub-tile exactly as igemm_kernel reads shared
// memory, then the epilogue stores - and the result is compared with a direct float64
// convolution. Also checks FastDiv against / and % over edge and random dividends, and runs the depthwise
// kernels' per-element bodies (dw_forward_at, dw_backward_data_at, the weight-gradient taps) over
// every element of the depthwise cases, and the Winograd F(2x2, 3x3) transforms for the 3x3
// stride-1 cases.
// No GPU needed:
//   nvcc -std=c++17 -O2 -Icsrc -o /tmp/emu_conv bench/gpu/emulate_conv_igemm.cu && /tmp/emu_conv
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "conv/conv_igemm.cuh"

using namespace fl::cuda::igemm;

struct Case {
  int n, c, h, w, k, r, s, sh, sw, ph, pw, dh, dw, groups, pad_extra_h;  // pad_extra_h: asymmetric bottom pad
};

static int out_size(int in, int pad_total, int d, int k, int s) { return (in + pad_total - d * (k - 1) - 1) / s + 1; }

// One emulated launch of igemm_kernel<Op, BM> over grid (tiles, groups, splits).
template <class Op>
static void run_engine(const Params& p0, int BM, int groups, int splits) {
  Params p = p0;
  p.tiles_m = (p.M + BM - 1) / BM;
  p.tiles_n = (p.N + kBN - 1) / kBN;
  const int MI = BM / 16;
  std::vector<float> As(kBK * BM), Bs(kBK * kBN);
  for (int z = 0; z < splits; ++z)
    for (int gy = 0; gy < groups; ++gy)
      for (int bx = 0; bx < p.tiles_m * p.tiles_n; ++bx) {
        int tm, tn;
        tile_coords(bx, p.tiles_m, p.tiles_n, tm, tn);
        const int m0 = tm * BM, n0 = tn * kBN;
        std::vector<Op> ops;
        ops.reserve(kThreads);
        for (int t = 0; t < kThreads; ++t) ops.emplace_back(p, t, m0, n0, gy, z);
        std::vector<float> acc(size_t(kThreads) * 64, 0.0f);
        const int kb = ops[0].kbegin, ke = ops[0].kend;
        for (int t = 1; t < kThreads; ++t)
          if (ops[t].kbegin != kb || ops[t].kend != ke) { std::printf("FAIL: threads disagree on k range\n"); std::exit(1); }
        for (int k0 = kb; k0 < ke; k0 += kBK) {
          std::fill(As.begin(), As.end(), NAN);  // a cell no loader writes would poison the result
          std::fill(Bs.begin(), Bs.end(), NAN);
          for (int t = 0; t < kThreads; ++t) {
            float ra[4], rb[4];
            const bool a_loader = BM == 128 || t < 128;
            if (a_loader) ops[t].load_a(p, k0, ra);
            ops[t].load_b(p, k0, rb);
            const int l_row = t >> 1, l_kq = (t & 1) * 4, l_kk = t >> 5, l_cq = (t & 31) * 4;
            for (int j = 0; j < 4; ++j) {
              if (a_loader) {
                if (Op::A_KCONTIG) As[(l_kq + j) * BM + l_row] = ra[j];
                else As[l_kk * BM + l_cq + j] = ra[j];
              }
              if (Op::B_KCONTIG) Bs[(l_kq + j) * kBN + l_row] = rb[j];
              else Bs[l_kk * kBN + l_cq + j] = rb[j];
            }
          }
          for (int t = 0; t < kThreads; ++t) {
            const int tx = t & 15, ty = t >> 4;
            for (int kk = 0; kk < kBK; ++kk)
              for (int i = 0; i < MI; ++i)
                for (int j = 0; j < 8; ++j) {
                  const int mi = i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4);
                  const int nj = j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4);
                  acc[size_t(t) * 64 + i * 8 + j] += As[kk * BM + mi] * Bs[kk * kBN + nj];
                }
          }
        }
        for (int t = 0; t < kThreads; ++t) {
          const int tx = t & 15, ty = t >> 4;
          for (int i = 0; i < MI; ++i) {
            const int row = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
            for (int h = 0; h < 2; ++h) {
              const float v[4] = {acc[size_t(t) * 64 + i * 8 + h * 4], acc[size_t(t) * 64 + i * 8 + h * 4 + 1],
                                  acc[size_t(t) * 64 + i * 8 + h * 4 + 2], acc[size_t(t) * 64 + i * 8 + h * 4 + 3]};
              ops[t].store(p, gy, row, n0 + h * 64 + tx * 4, v);
            }
          }
        }
      }
}

// conv.cu's set_split: slice length a multiple of 8; returns the slice count.
static int set_split(Params& p, int splits) {
  int kc = (p.Kdim + splits - 1) / splits;
  kc = std::max(kBK, (kc + kBK - 1) / kBK * kBK);
  p.k_chunk = kc;
  return std::max(1, (p.Kdim + kc - 1) / kc);
}

static double max_rel(const std::vector<float>& got, const std::vector<double>& want) {
  double scale = 1e-30, err = 0;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;  // never written (NaN-filled) or poisoned by an unset tile cell
    err = std::max(err, std::fabs(double(got[i]) - want[i]));
  }
  return err / scale;
}

static bool run_case(const Case& cs, std::mt19937& rng, int split_hint, int BM) {
  const int OH = out_size(cs.h, 2 * cs.ph + cs.pad_extra_h, cs.dh, cs.r, cs.sh);
  const int OW = out_size(cs.w, 2 * cs.pw, cs.dw, cs.s, cs.sw);
  const int Cg = cs.c / cs.groups, Kg = cs.k / cs.groups;
  std::normal_distribution<float> nd;
  std::vector<float> x(size_t(cs.n) * cs.c * cs.h * cs.w), wt(size_t(cs.k) * Cg * cs.r * cs.s), bias(cs.k),
      dy(size_t(cs.n) * cs.k * OH * OW), bias_c(cs.c);
  for (auto* v : {&x, &wt, &bias, &dy, &bias_c})
    for (auto& e : *v) e = nd(rng);
  // Direct float64 references.
  std::vector<double> y_ref(dy.size()), dx_ref(x.size(), 0.0), dw_ref(wt.size(), 0.0);
  for (int i = 0; i < cs.n; ++i)
    for (int k = 0; k < cs.k; ++k) {
      const int g = k / Kg;
      for (int oy = 0; oy < OH; ++oy)
        for (int ox = 0; ox < OW; ++ox) {
          double acc = bias[k];
          const size_t yi = ((size_t(i) * cs.k + k) * OH + oy) * OW + ox;
          for (int c = 0; c < Cg; ++c)
            for (int r = 0; r < cs.r; ++r)
              for (int s = 0; s < cs.s; ++s) {
                const int iy = oy * cs.sh - cs.ph + r * cs.dh, ix = ox * cs.sw - cs.pw + s * cs.dw;
                if (iy < 0 || iy >= cs.h || ix < 0 || ix >= cs.w) continue;
                const size_t xi = ((size_t(i) * cs.c + g * Cg + c) * cs.h + iy) * cs.w + ix;
                const size_t wi = ((size_t(k) * Cg + c) * cs.r + r) * cs.s + s;
                acc += double(wt[wi]) * x[xi];
                dx_ref[xi] += double(wt[wi]) * dy[yi];
                dw_ref[wi] += double(dy[yi]) * x[xi];
              }
          y_ref[yi] = acc;
        }
    }
  for (int i = 0; i < cs.n; ++i)
    for (int c = 0; c < cs.c; ++c)
      for (int q = 0; q < cs.h * cs.w; ++q) dx_ref[(size_t(i) * cs.c + c) * cs.h * cs.w + q] += bias_c[c];

  Params base{};
  base.g = make_geom(cs.n, cs.c, cs.h, cs.w, cs.k, OH, OW, cs.r, cs.s, cs.sh, cs.sw, cs.ph, cs.pw, cs.dh, cs.dw,
                     cs.groups);
  bool ok = true;
  // forward (vec paths emulated: the host loaders take the same branches as the device ones)
  {
    Params p = base;
    p.a_src = wt.data(); p.b_src = x.data(); p.bias = bias.data();
    p.M = Kg; p.N = cs.n * OH * OW; p.Kdim = Cg * cs.r * cs.s;
    p.vec_a = p.Kdim % 4 == 0;
    p.vec_out = (OH * OW) % 4 == 0;
    const int splits = set_split(p, split_hint);
    p.atomic_out = splits > 1;
    std::vector<float> y(dy.size(), p.atomic_out ? 0.0f : NAN);
    p.out = y.data();
    run_engine<FwdOp>(p, BM, cs.groups, splits);
    const double e = max_rel(y, y_ref);
    if (!(e < 1e-5)) { std::printf("  forward max rel err %.3g\n", e); ok = false; }
  }
  {
    Params p = base;
    p.a_src = wt.data(); p.b_src = dy.data(); p.bias = bias_c.data();
    p.M = Cg; p.N = cs.n * cs.h * cs.w; p.Kdim = Kg * cs.r * cs.s;
    p.vec_out = (cs.h * cs.w) % 4 == 0;
    const int splits = set_split(p, split_hint);
    p.atomic_out = splits > 1;
    std::vector<float> dx(x.size(), p.atomic_out ? 0.0f : NAN);
    p.out = dx.data();
    run_engine<BwdDataOp>(p, BM, cs.groups, splits);
    const double e = max_rel(dx, dx_ref);
    if (!(e < 1e-5)) { std::printf("  backward data max rel err %.3g\n", e); ok = false; }
  }
  {
    Params p = base;
    p.a_src = dy.data(); p.b_src = x.data(); p.bias = nullptr;
    p.M = Kg; p.N = Cg * cs.r * cs.s; p.Kdim = cs.n * OH * OW;
    p.vec_a = (OH * OW) % 4 == 0;
    const int splits = set_split(p, split_hint);
    p.atomic_out = splits > 1;
    std::vector<float> dw(wt.size(), p.atomic_out ? 0.0f : NAN);
    p.out = dw.data();
    run_engine<BwdWeightOp>(p, BM, cs.groups, splits);
    const double e = max_rel(dw, dw_ref);
    if (!(e < 1e-5)) { std::printf("  backward weight (splits %d) max rel err %.3g\n", splits, e); ok = false; }
  }
  if (cs.r == 3 && cs.s == 3 && cs.sh == 1 && cs.sw == 1 && cs.dh == 1 && cs.dw == 1 && cs.groups == 1) {
    // Winograd F(2x2, 3x3): the three transform bodies around a plain batched product
    WinoGeom wg{cs.n, cs.c, cs.h, cs.w, cs.k, OH, OW, cs.ph, cs.pw, (OH + 1) / 2, (OW + 1) / 2, 0};
    wg.P = int64_t(cs.n) * wg.TH * wg.TW;
    std::vector<float> V(size_t(16) * cs.c * wg.P, NAN), U(size_t(16) * cs.k * cs.c, NAN), M(size_t(16) * cs.k * wg.P),
        y(dy.size(), NAN);
    for (int k = 0; k < cs.k; ++k)
      for (int c = 0; c < cs.c; ++c) wino_weight_tile(wt.data(), U.data(), cs.k, cs.c, k, c);
    for (int c = 0; c < cs.c; ++c)
      for (int64_t q = 0; q < wg.P; ++q) wino_input_tile(wg, x.data(), V.data(), c, q);
    for (int xi = 0; xi < 16; ++xi)
      for (int k = 0; k < cs.k; ++k)
        for (int64_t q = 0; q < wg.P; ++q) {
          double acc = 0;
          for (int c = 0; c < cs.c; ++c)
            acc += double(U[(size_t(xi) * cs.k + k) * cs.c + c]) * V[(size_t(xi) * cs.c + c) * wg.P + q];
          M[(size_t(xi) * cs.k + k) * wg.P + q] = float(acc);
        }
    for (int k = 0; k < cs.k; ++k)
      for (int64_t q = 0; q < wg.P; ++q) wino_output_tile(wg, M.data(), bias.data(), y.data(), k, q);
    const double e = max_rel(y, y_ref);
    if (!(e < 1e-5)) {
      std::printf("  winograd forward max rel err %.3g\n", e);
      ok = false;
    }
  }
  if (cs.groups > 1 && cs.groups == cs.c) {  // the depthwise kernels' bodies, every element
    const DwParams d = make_dw_params(cs.n, cs.c, cs.h, cs.w, cs.k, OH, OW, cs.r, cs.s, cs.sh, cs.sw, cs.ph, cs.pw,
                                      cs.dh, cs.dw, x.data(), wt.data(), bias.data(), nullptr);
    std::vector<float> y(dy.size()), dx(x.size()), dw(wt.size(), 0.0f);
    for (int e = 0; e < int(y.size()); ++e) y[e] = dw_forward_at(d, e);
    std::vector<float> y4(dy.size(), NAN);  // the kernel's 4-per-thread body
    for (int e4 = 0; e4 < cs.n * cs.k * OH * d.ow4; ++e4) {
      float v[4];
      const int cnt = dw_forward_row4(d, e4, v);
      const int row = e4 / d.ow4, ox0 = (e4 - row * d.ow4) * 4;
      for (int j = 0; j < cnt; ++j) y4[size_t(row) * OW + ox0 + j] = v[j];
    }
    DwParams db = d;
    db.bias = bias_c.data();
    for (int e = 0; e < int(dx.size()); ++e) dx[e] = dw_backward_data_at(db, dy.data(), e);
    const int rs = cs.r * cs.s, per = (cs.n + 1) / 2;  // two image slices, as a batch split would
    for (int k = 0; k < cs.k; ++k)
      for (int img0 = 0; img0 < cs.n; img0 += per) {
        const int img1 = std::min(cs.n, img0 + per);
        for (int t0 = 0; t0 < rs; t0 += kDwTaps) {
          float acc[kDwTaps];
          int ty[kDwTaps], tx[kDwTaps];
          dw_weight_taps(d, t0, acc, ty, tx);
          for (int q = 0; q < (img1 - img0) * OH * OW; ++q) dw_weight_accumulate(d, dy.data(), k, img0, q, ty, tx, acc);
          for (int t = 0; t < kDwTaps && t0 + t < rs; ++t) dw[size_t(k) * rs + t0 + t] += acc[t];
        }
      }
    const double e1 = std::max(max_rel(y, y_ref), max_rel(y4, y_ref)), e2 = max_rel(dx, dx_ref),
                 e3 = max_rel(dw, dw_ref);
    if (!(e1 < 1e-5 && e2 < 1e-5 && e3 < 1e-5)) {
      std::printf("  depthwise: forward %.3g, data %.3g, weight %.3g\n", e1, e2, e3);
      ok = false;
    }
  }
  return ok;
}

int main() {
  // FastDiv
  std::mt19937 rng(7);
  int bad = 0;
  const int divs[] = {1, 2, 3, 5, 7, 9, 12, 49, 64, 196, 784, 3136, 12544, 65535, 65536, 1 << 20, 1000003, (1 << 30) + 7};
  for (int d : divs) {
    FastDiv f(d);
    std::uniform_int_distribution<int> u(0, 0x7fffffff);
    for (int i = 0; i < 200000; ++i) {
      const int n = i < 1000 ? i : (i < 2000 ? 0x7fffffff - (i - 1000) : u(rng));
      int q, r;
      f.divmod(n, q, r);
      if (q != n / d || r != n % d) {
        if (bad++ < 5) std::printf("FastDiv(%d): %d -> %d,%d\n", d, n, q, r);
      }
    }
  }
  std::printf("FastDiv: %s\n", bad ? "FAIL" : "ok");
  // Geometries: the GPU tests' conv cases plus tile edges (M, N, K around 128 / 8).
  const Case cases[] = {
      {2, 3, 7, 9, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0},     {1, 4, 6, 5, 6, 3, 2, 2, 1, 1, 0, 1, 2, 2, 0},
      {2, 3, 1, 1, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0},     {1, 2, 1, 1, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0},
      {2, 3, 5, 4, 2, 7, 6, 1, 1, 1, 1, 1, 1, 1, 0},     {2, 2, 9, 8, 3, 2, 2, 3, 3, 0, 0, 1, 1, 1, 0},
      {2, 6, 7, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 6, 0},     {2, 4, 9, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1, 4, 0},
      {1, 3, 8, 9, 3, 5, 3, 1, 2, 2, 0, 2, 1, 3, 0},     {2, 6, 5, 6, 9, 3, 3, 1, 1, 1, 1, 1, 1, 3, 0},
      {2, 8, 6, 7, 4, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0},     {2, 20, 7, 9, 100, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0},
      {2, 8, 6, 7, 4, 1, 1, 2, 2, 0, 0, 1, 1, 2, 0},     {2, 3, 6, 7, 4, 4, 3, 1, 1, 1, 1, 1, 1, 1, 1},
      {3, 32, 33, 31, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0}, {9, 16, 5, 5, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0},
      {1, 48, 9, 9, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0},   {2, 64, 8, 8, 130, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0},
      {1, 130, 12, 12, 129, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0}, {3, 5, 16, 16, 7, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0},
      {2, 9, 3, 2, 4, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0},     {1, 4, 12, 12, 8, 3, 3, 1, 1, 2, 2, 2, 2, 2, 0},
      // depthwise (also through the dedicated bodies): 7x7, 9x9 mult 2, 65-tall, stride 2, mult 2 5x5
      {2, 4, 12, 13, 4, 7, 7, 1, 1, 3, 3, 1, 1, 4, 0},   {1, 2, 10, 11, 4, 9, 9, 1, 1, 4, 4, 1, 1, 2, 0},
      {1, 2, 66, 3, 2, 65, 1, 1, 1, 0, 0, 1, 1, 2, 0},   {2, 3, 11, 12, 3, 3, 3, 2, 2, 1, 1, 1, 1, 3, 0},
      {3, 5, 13, 11, 10, 5, 5, 2, 2, 2, 2, 1, 1, 5, 0},  {2, 6, 9, 9, 6, 3, 3, 1, 1, 1, 1, 2, 2, 6, 1},
  };
  int failed = 0, i = 0;
  for (const Case& cs : cases) {
    for (int cfg = 0; cfg < 3; ++cfg) {
      const int split = cfg == 1 ? 3 : 1, BM = cfg == 2 ? 64 : 128;  // (1, 128), (3, 128), (1, 64)
      const bool ok = run_case(cs, rng, split, BM);
      std::printf("case %2d split %d BM %3d: n=%d c=%d %dx%d k=%d %dx%d s=%d,%d p=%d,%d(+%d) d=%d,%d g=%d  %s\n", i, split, BM,
                  cs.n, cs.c, cs.h, cs.w, cs.k, cs.r, cs.s, cs.sh, cs.sw, cs.ph, cs.pw, cs.pad_extra_h, cs.dh, cs.dw,
                  cs.groups, ok ? "ok" : "FAIL");
      failed += !ok;
    }
    ++i;
  }
  std::printf(failed || bad ? "SOME FAILED\n" : "ALL OK\n");
  return failed || bad ? 1 : 0;
}
