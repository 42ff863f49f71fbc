// The three convolution passes as implicit GEMMs: per-thread operand loaders and epilogues
// for the 128x128x8 float32 tile engine in conv.cu (the same block shape and thread roles as
// gemm.cu's sgemm_kernel). Everything here is __host__ __device__ so that
// bench/gpu/emulate_conv_igemm.cu can run these exact loaders and epilogues on the CPU with
// emulated threads and blocks and compare with a direct convolution: the index math is checked
// without a GPU.
//
// Engine contract (one block = one BMx128 tile of C = A B, BM = 128 or 64, 256 threads):
//   A tile As[k][m] (8 x BM), B tile Bs[k][n] (8 x 128), filled once per k-tile of 8 (with
//   BM = 64 only threads 0..127 load A: their rows t/2 are the tile's 64).
//   An operand "k-contiguous" (A_KCONTIG / B_KCONTIG true): thread t loads row/column
//     t/2 of the tile at k offsets (t%2)*4 + 0..3 (4 values -> As[kq+j][t/2]);
//   otherwise: k row t/32, 4 consecutive columns (t%32)*4 + 0..3 (-> one float4 store).
//   Loaders return zeros outside the matrix; k runs over [kbegin, kend) of the op.
//   Results: thread (tx = t%16, ty = t/16) owns rows {ty*4+i, 64+ty*4+i} (BM = 64: ty*4+i), columns
//   {tx*4+j, 64+tx*4+j}; the epilogue gets 4 consecutive columns of one row at a time.
// Index types: 32-bit throughout (the host launches the batch in image chunks so that x, y and
// the GEMM extents of one launch stay below 2^31 elements): int64 per-pixel state cost the
// registers that made the loaders spill under the 128-register cap of 2 blocks/SM.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FL_HD __host__ __device__ __forceinline__
#else
#define FL_HD inline
#endif

#if defined(__CUDA_ARCH__)
#define FL_LDG(p) __ldg(p)
#define FL_UNROLL _Pragma("unroll")
#else
#define FL_LDG(p) (*(p))
#define FL_UNROLL
#endif

namespace fl {
namespace cuda {
namespace igemm {

constexpr int kBN = 128, kBK = 8, kThreads = 256;

// n / d and n % d for 0 <= n < 2^31 with a multiply-high and a shift (CUTLASS's FastDivmod):
// the loaders decompose flat indices every k-tile, and a 32-bit division is ~20 instructions.
struct FastDiv {
  int d = 1;
  unsigned mul = 0;
  int shr = 0;
  FastDiv() = default;
  explicit FastDiv(int div) : d(div) {
    if (div != 1) {
      int l = 0;
      while ((1LL << l) < div) ++l;  // ceil(log2(div))
      const int p = 31 + l;
      mul = unsigned(((1ULL << p) + unsigned(div) - 1) / unsigned(div));
      shr = p - 32;
    }
  }
  FL_HD int div(int n) const {
#if defined(__CUDA_ARCH__)
    return d == 1 ? n : int(__umulhi(unsigned(n), mul) >> shr);
#else
    return d == 1 ? n : int(((uint64_t(unsigned(n)) * mul) >> 32) >> shr);
#endif
  }
  FL_HD void divmod(int n, int& q, int& r) const {
    q = div(n);
    r = n - q * d;
  }
};

// Geometry shared by the three passes (see conv_cuda.h's Conv2d; all per-group extents).
struct ConvGeom {
  int n, C, H, W, K, OH, OW, R, S, sh, sw, ph, pw, dh, dw;
  int Cg, Kg;
  int chw, khw_out;      // C*H*W and K*OH*OW: one image of x and of y
  int hw, ohw, rs;       // H*W, OH*OW, R*S
  FastDiv div_ohw, div_ow, div_hw, div_w, div_rs, div_s, div_sh, div_sw;
};

inline ConvGeom make_geom(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t oh, int64_t ow, int r,
                          int s, int sh, int sw, int ph, int pw, int dh, int dw, int groups) {
  ConvGeom g{};
  g.n = int(n); g.C = int(c); g.H = int(h); g.W = int(w); g.K = int(k); g.OH = int(oh); g.OW = int(ow);
  g.R = r; g.S = s; g.sh = sh; g.sw = sw; g.ph = ph; g.pw = pw; g.dh = dh; g.dw = dw;
  g.Cg = int(c / groups);
  g.Kg = int(k / groups);
  g.chw = int(c * h * w);
  g.khw_out = int(k * oh * ow);
  g.hw = int(h * w);
  g.ohw = int(oh * ow);
  g.rs = r * s;
  g.div_ohw = FastDiv(g.ohw); g.div_ow = FastDiv(g.OW); g.div_hw = FastDiv(g.hw); g.div_w = FastDiv(g.W);
  g.div_rs = FastDiv(g.rs); g.div_s = FastDiv(s); g.div_sh = FastDiv(sh); g.div_sw = FastDiv(sw);
  return g;
}

struct Params {
  ConvGeom g;
  const float* a_src;  // the pass's A operand source (weights or dy)
  const float* b_src;  // the pass's B operand source (x or dy)
  const float* bias;   // added per output channel (forward, backward-data); may be null
  float* out;
  int M, N, Kdim;      // the GEMM per group
  int k_chunk;         // split-K: reduction slice per blockIdx.z (a multiple of 8; Kdim when not split)
  int tiles_m, tiles_n;
  bool vec_a;          // 16-byte aligned rows of A for float4 loads (forward weights, bwd-weight dy)
  bool vec_out;        // float4 output stores allowed
  bool atomic_out;     // split-K partial results: atomicAdd into a zeroed output (bias: slice 0 only)
};

// Where 4 consecutive GEMM columns n..n+3 of output channel `ch` land in an NCHW tensor of
// `planes` channels with `plane` elements each (columns are flat (image, pixel) indices).
FL_HD void store_nchw(const Params& p, float* out, int ch, int planes, int plane, const FastDiv& div_plane,
                      int n, int ncols, const float (&v)[4], float add) {
  if (p.atomic_out) {
    FL_UNROLL for (int j = 0; j < 4; ++j) {
      if (n + j >= ncols) break;
      int img, pix;
      div_plane.divmod(n + j, img, pix);
#if defined(__CUDA_ARCH__)
      atomicAdd(out + ((img * planes + ch) * plane + pix), v[j] + add);
#else
      out[(img * planes + ch) * plane + pix] += v[j] + add;
#endif
    }
    return;
  }
  if (p.vec_out && n + 3 < ncols) {  // plane % 4 == 0: the 4 columns share an image, 16-byte aligned
    int img, pix;
    div_plane.divmod(n, img, pix);
    float* dst = out + ((img * planes + ch) * plane + pix);
#if defined(__CUDA_ARCH__)
    *reinterpret_cast<float4*>(dst) = make_float4(v[0] + add, v[1] + add, v[2] + add, v[3] + add);
#else
    FL_UNROLL for (int j = 0; j < 4; ++j) dst[j] = v[j] + add;
#endif
    return;
  }
  FL_UNROLL for (int j = 0; j < 4; ++j) {
    if (n + j >= ncols) break;
    int img, pix;
    div_plane.divmod(n + j, img, pix);
    out[(img * planes + ch) * plane + pix] = v[j] + add;
  }
}

// ---- forward: y[img, gK + m, pix] = sum_kk W[gK + m, kk] * im2col[kk, (img, pix)] ----------
//   M = Kg, N = n*OH*OW, Kdim = Cg*R*S; A = weights (k-contiguous rows), B = gathered x.
struct FwdOp {
  static constexpr bool A_KCONTIG = true, B_KCONTIG = false;
  int kbegin, kend;
  // A loader: weight row (m0 + t/2), k offset (t%2)*4; a_off: the row's first element (a
  // 32-bit offset, not a pointer: two registers fewer, and the loaders were spilling), or -1
  int a_off;
  int tid;  // the k offsets of both loaders, (tid % 2) * 4 and tid / 32, are recomputed from it
            // (one register instead of two: the sm_80 build was 4 bytes over the 128 cap)
  // B loader: k row t/32, columns (t%32)*4 + j. Only the first pixel's state is kept (the
  // full per-pixel state of 4 pixels made this loader spill under the 128-register cap): when
  // the 4 pixels lie in one output row (the common case) they share image and row, otherwise
  // each is decomposed again from its column index.
  int b_col0;
  int b_base, b_iy0, b_ix0;  // first pixel: image + group channel offset into x, input row/col at tap 0
  bool b_row;

  FL_HD FwdOp(const Params& p, int tid_, int m0, int n0, int group, int split) : tid(tid_) {
    const ConvGeom& g = p.g;
    kbegin = split * p.k_chunk;
    kend = kbegin + p.k_chunk < p.Kdim ? kbegin + p.k_chunk : p.Kdim;
    const int row = m0 + (tid >> 1);
    a_off = row < p.M ? (group * g.Kg + row) * p.Kdim + (tid & 1) * 4 : -1;
    b_col0 = n0 + (tid & 31) * 4;
    int img = 0, pix = 0, oy = 0, ox = 0;
    if (b_col0 < p.N) {
      g.div_ohw.divmod(b_col0, img, pix);
      g.div_ow.divmod(pix, oy, ox);
    }
    b_base = img * g.chw + group * g.Cg * g.hw;
    b_iy0 = oy * g.sh - g.ph;
    b_ix0 = ox * g.sw - g.pw;
    b_row = b_col0 + 3 < p.N && ox + 3 < g.OW;
  }
  FL_HD void load_a(const Params& p, int k0, float (&r)[4]) const {
    const int kk = k0 + (tid & 1) * 4;
    const float* a_row = p.a_src + a_off;
    if (a_off < 0) {
      FL_UNROLL for (int j = 0; j < 4; ++j) r[j] = 0.0f;
    } else if (p.vec_a && kk + 3 < kend) {
#if defined(__CUDA_ARCH__)
      const float4 v = __ldg(reinterpret_cast<const float4*>(a_row + k0));
      r[0] = v.x; r[1] = v.y; r[2] = v.z; r[3] = v.w;
#else
      FL_UNROLL for (int j = 0; j < 4; ++j) r[j] = a_row[k0 + j];
#endif
    } else {
      FL_UNROLL for (int j = 0; j < 4; ++j) r[j] = kk + j < kend ? FL_LDG(a_row + k0 + j) : 0.0f;
    }
  }
  FL_HD void load_b(const Params& p, int k0, float (&r)[4]) const {
    const ConvGeom& g = p.g;
    const int kk = k0 + (tid >> 5);
    FL_UNROLL for (int j = 0; j < 4; ++j) r[j] = 0.0f;
    if (kk >= kend) return;
    int c, rs, ky, kx;
    g.div_rs.divmod(kk, c, rs);
    g.div_s.divmod(rs, ky, kx);
    const int ty = ky * g.dh, tx = kx * g.dw;
    const int coff = c * g.hw;
    if (b_row) {
      const int iy = b_iy0 + ty;
      if (unsigned(iy) >= unsigned(g.H)) return;
      const float* src = p.b_src + (b_base + coff + iy * g.W);
      FL_UNROLL for (int j = 0; j < 4; ++j) {
        const int ix = b_ix0 + j * g.sw + tx;
        if (unsigned(ix) < unsigned(g.W)) r[j] = FL_LDG(src + ix);
      }
      return;
    }
    // (rare: rows of fewer than 4 outputs, the right edge, the last columns) the group's channel
    // offset is b_base less the first pixel's image offset - not kept, to save a register
    const int group_off = b_base - g.div_ohw.div(b_col0) * g.chw;
    FL_UNROLL for (int j = 0; j < 4; ++j) {
      const int col = b_col0 + j;
      if (col >= p.N) break;
      int img, pix, oy, ox;
      g.div_ohw.divmod(col, img, pix);
      g.div_ow.divmod(pix, oy, ox);
      const int iy = oy * g.sh - g.ph + ty, ix = ox * g.sw - g.pw + tx;
      if (unsigned(iy) < unsigned(g.H) && unsigned(ix) < unsigned(g.W))
        r[j] = FL_LDG(p.b_src + (img * g.chw + group_off + coff + iy * g.W + ix));
    }
  }
  FL_HD void store(const Params& p, int group, int m, int n, const float (&v)[4]) const {
    if (m >= p.M || n >= p.N) return;
    const int ch = group * p.g.Kg + m;
    const float add = p.bias && kbegin == 0 ? FL_LDG(p.bias + ch) : 0.0f;  // bias: the first slice only
    store_nchw(p, p.out, ch, p.g.K, p.g.ohw, p.g.div_ohw, n, p.N, v, add);
  }
};

// ---- backward data: dx[img, gC + c, pix] = sum_{kk=(k,r,s)} W[gK + k, c, r, s] dy[img, gK + k, oy, ox]
//   with oy*sh = iy + ph - r*dh (only where divisible and in range).
//   M = Cg, N = n*H*W, Kdim = Kg*R*S; A = weights read across k (gathered), B = gathered dy.
struct BwdDataOp {
  static constexpr bool A_KCONTIG = true, B_KCONTIG = false;
  int kbegin, kend;
  int a_off;  // W offset of (gK*Cg + c)*RS: element (k, rs) at a_off + k*Cg*RS + rs; -1 past M
  int a_kq;
  // B loader: k row t/32, 4 input pixels from column b_col0. As in FwdOp, only the first
  // pixel's state is kept: when the 4 lie in one input row they share image, row and base.
  int b_kk, b_col0;
  int b_base, b_ty0, b_tx0;  // first pixel: image + group offset into dy, iy + ph, ix + pw
  int b_group_off;           // group * Kg * OH * OW
  bool b_row;

  FL_HD BwdDataOp(const Params& p, int tid, int m0, int n0, int group, int split) {
    const ConvGeom& g = p.g;
    kbegin = split * p.k_chunk;
    kend = kbegin + p.k_chunk < p.Kdim ? kbegin + p.k_chunk : p.Kdim;
    const int row = m0 + (tid >> 1);
    a_kq = (tid & 1) * 4;
    a_off = row < p.M ? (group * g.Kg * g.Cg + row) * g.rs : -1;
    b_kk = tid >> 5;
    b_col0 = n0 + (tid & 31) * 4;
    int img = 0, pix = 0, iy = 0, ix = 0;
    if (b_col0 < p.N) {
      g.div_hw.divmod(b_col0, img, pix);
      g.div_w.divmod(pix, iy, ix);
    }
    b_group_off = group * g.Kg * g.ohw;
    b_base = img * g.khw_out + b_group_off;
    b_ty0 = iy + g.ph;
    b_tx0 = ix + g.pw;
    b_row = b_col0 + 3 < p.N && ix + 3 < g.W;
  }
  FL_HD void load_a(const Params& p, int k0, float (&r)[4]) const {
    const ConvGeom& g = p.g;
    const int kk0 = k0 + a_kq;
    if (a_off < 0 || kk0 >= kend) {
      FL_UNROLL for (int j = 0; j < 4; ++j) r[j] = 0.0f;
      return;
    }
    int k, rs;
    g.div_rs.divmod(kk0, k, rs);
    const float* a_base = p.a_src + a_off;
    FL_UNROLL for (int j = 0; j < 4; ++j) {  // walk (k, rs) along the 4 consecutive kk
      r[j] = kk0 + j < kend ? FL_LDG(a_base + (k * g.Cg * g.rs + rs)) : 0.0f;
      if (++rs == g.rs) {
        rs = 0;
        ++k;
      }
    }
  }
  // dy element feeding input position (ty - ph, tx - pw) through tap (ky*dh, kx*dw), or 0.
  FL_HD float gather(const Params& p, int base, int koff, int a, int b) const {
    const ConvGeom& g = p.g;
    if (a < 0 || b < 0) return 0.0f;
    int oy, ry, ox, rx;
    g.div_sh.divmod(a, oy, ry);
    g.div_sw.divmod(b, ox, rx);
    if (ry != 0 || rx != 0 || oy >= g.OH || ox >= g.OW) return 0.0f;
    return FL_LDG(p.b_src + (base + koff + oy * g.OW + ox));
  }
  FL_HD void load_b(const Params& p, int k0, float (&r)[4]) const {
    const ConvGeom& g = p.g;
    const int kk = k0 + b_kk;
    FL_UNROLL for (int j = 0; j < 4; ++j) r[j] = 0.0f;
    if (kk >= kend) return;
    int k, rs, ky, kx;
    g.div_rs.divmod(kk, k, rs);
    g.div_s.divmod(rs, ky, kx);
    const int koff = k * g.ohw;
    const int dy_ = ky * g.dh, dx_ = kx * g.dw;
    if (b_row) {
      FL_UNROLL for (int j = 0; j < 4; ++j) r[j] = gather(p, b_base, koff, b_ty0 - dy_, b_tx0 + j - dx_);
      return;
    }
    FL_UNROLL for (int j = 0; j < 4; ++j) {
      const int col = b_col0 + j;
      if (col >= p.N) break;
      int img, pix, iy, ix;
      g.div_hw.divmod(col, img, pix);
      g.div_w.divmod(pix, iy, ix);
      r[j] = gather(p, img * g.khw_out + b_group_off, koff, iy + g.ph - dy_, ix + g.pw - dx_);
    }
  }
  FL_HD void store(const Params& p, int group, int m, int n, const float (&v)[4]) const {
    if (m >= p.M || n >= p.N) return;
    const int ch = group * p.g.Cg + m;
    const float add = p.bias && kbegin == 0 ? FL_LDG(p.bias + ch) : 0.0f;  // bias: the first slice only
    store_nchw(p, p.out, ch, p.g.C, p.g.hw, p.g.div_hw, n, p.N, v, add);
  }
};

// ---- backward weight: dW[gK + m, (c, r, s)] = sum_{q=(img, oy, ox)} dy[img, gK + m, oy, ox] x[img, gC + c, iy, ix]
//   M = Kg, N = Cg*R*S, Kdim = n*OH*OW, split over blockIdx.z in slices of k_chunk.
//   A = dy rows (k-contiguous, 4 consecutive output pixels), B = x gathered with its column
//   (c, r, s) fixed per thread (k-contiguous too).
struct BwdWeightOp {
  static constexpr bool A_KCONTIG = true, B_KCONTIG = true;
  int kbegin, kend;
  const float* a_chan;  // dy + (gK + m)*OH*OW: element q=(img, pix) at img*K*OH*OW + pix
  bool a_ok;
  int a_kq;
  const float* b_chan;  // x + (gC + c)*H*W
  bool b_ok;
  int b_kq, b_dy, b_dx;  // r*dh - ph, s*dw - pw

  FL_HD BwdWeightOp(const Params& p, int tid, int m0, int n0, int group, int split) {
    const ConvGeom& g = p.g;
    kbegin = split * p.k_chunk;
    kend = kbegin + p.k_chunk < p.Kdim ? kbegin + p.k_chunk : p.Kdim;
    const int row = m0 + (tid >> 1);
    a_ok = row < p.M;
    a_kq = (tid & 1) * 4;
    a_chan = p.a_src + (group * g.Kg + (a_ok ? row : 0)) * g.ohw;
    const int col = n0 + (tid >> 1);
    b_ok = col < p.N;
    b_kq = a_kq;
    int c = 0, rs = 0, ky = 0, kx = 0;
    if (b_ok) {
      g.div_rs.divmod(col, c, rs);
      g.div_s.divmod(rs, ky, kx);
    }
    b_chan = p.b_src + (group * g.Cg + c) * g.hw;
    b_dy = ky * g.dh - g.ph;
    b_dx = kx * g.dw - g.pw;
  }
  FL_HD void load_a(const Params& p, int k0, float (&r)[4]) const {
    const ConvGeom& g = p.g;
    const int q0 = k0 + a_kq;
    if (!a_ok || q0 >= kend) {
      FL_UNROLL for (int j = 0; j < 4; ++j) r[j] = 0.0f;
      return;
    }
    int img, pix;
    g.div_ohw.divmod(q0, img, pix);
    const float* src = a_chan + (img * g.khw_out + pix);
    if (p.vec_a && q0 + 3 < kend) {  // OH*OW % 4 == 0: same image, 16-byte aligned
#if defined(__CUDA_ARCH__)
      const float4 v = __ldg(reinterpret_cast<const float4*>(src));
      r[0] = v.x; r[1] = v.y; r[2] = v.z; r[3] = v.w;
#else
      FL_UNROLL for (int j = 0; j < 4; ++j) r[j] = src[j];
#endif
      return;
    }
    FL_UNROLL for (int j = 0; j < 4; ++j) {
      r[j] = q0 + j < kend ? FL_LDG(a_chan + (img * g.khw_out + pix)) : 0.0f;
      if (++pix == g.ohw) {
        pix = 0;
        ++img;
      }
    }
  }
  FL_HD void load_b(const Params& p, int k0, float (&r)[4]) const {
    const ConvGeom& g = p.g;
    const int q0 = k0 + b_kq;
    if (!b_ok || q0 >= kend) {
      FL_UNROLL for (int j = 0; j < 4; ++j) r[j] = 0.0f;
      return;
    }
    int img, pix, oy, ox;
    g.div_ohw.divmod(q0, img, pix);
    g.div_ow.divmod(pix, oy, ox);
    FL_UNROLL for (int j = 0; j < 4; ++j) {
      float v = 0.0f;
      if (q0 + j < kend) {
        const int iy = oy * g.sh + b_dy, ix = ox * g.sw + b_dx;
        if (unsigned(iy) < unsigned(g.H) && unsigned(ix) < unsigned(g.W))
          v = FL_LDG(b_chan + (img * g.chw + iy * g.W + ix));
      }
      r[j] = v;
      if (++ox == g.OW) {
        ox = 0;
        if (++oy == g.OH) {
          oy = 0;
          ++img;
        }
      }
    }
  }
  FL_HD void store(const Params& p, int group, int m, int n, const float (&v)[4]) const {
    if (m >= p.M || n >= p.N) return;
    float* dst = p.out + ((group * p.g.Kg + m) * p.N + n);
    FL_UNROLL for (int j = 0; j < 4; ++j) {
      if (n + j >= p.N) break;
      if (p.atomic_out) {
#if defined(__CUDA_ARCH__)
        atomicAdd(dst + j, v[j]);
#else
        dst[j] += v[j];
#endif
      } else {
        dst[j] = v[j];
      }
    }
  }
};

// ---- depthwise (groups == C, K = mult * C): direct per-element bodies ------------------------
struct DwParams {
  const float* x;
  const float* w;
  const float* bias;  // forward: per output channel k; data gradient: per channel c (conv_transpose2d)
  float* y;
  int n, C, H, W, K, OH, OW, R, S, sh, sw, ph, pw, dh, dw, mult;
  int ow4;  // ceil(OW / 4): the forward's 4-output groups per row
  FastDiv div_ow, div_ohw, div_k, div_w, div_hw, div_c, div_mult, div_sh, div_sw, div_oh, div_ow4;
};

inline DwParams make_dw_params(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t oh, int64_t ow, int r,
                               int s, int sh, int sw, int ph, int pw, int dh, int dw, const float* x, const float* wt,
                               const float* bias, float* y) {
  DwParams p{};
  p.x = x; p.w = wt; p.bias = bias; p.y = y;
  p.n = int(n); p.C = int(c); p.H = int(h); p.W = int(w); p.K = int(k); p.OH = int(oh); p.OW = int(ow);
  p.R = r; p.S = s; p.sh = sh; p.sw = sw; p.ph = ph; p.pw = pw; p.dh = dh; p.dw = dw;
  p.mult = int(k / c);
  p.div_ow = FastDiv(p.OW); p.div_ohw = FastDiv(p.OH * p.OW); p.div_k = FastDiv(p.K);
  p.div_w = FastDiv(p.W); p.div_hw = FastDiv(p.H * p.W); p.div_c = FastDiv(p.C);
  p.div_mult = FastDiv(p.mult); p.div_sh = FastDiv(p.sh); p.div_sw = FastDiv(p.sw);
  p.ow4 = (p.OW + 3) / 4;
  p.div_oh = FastDiv(p.OH); p.div_ow4 = FastDiv(p.ow4);
  return p;
}

// y at flat index e of (n, K, OH, OW).
FL_HD float dw_forward_at(const DwParams& p, int e) {
  int plane, pix, oy, ox, img, k;
  p.div_ohw.divmod(e, plane, pix);
  p.div_ow.divmod(pix, oy, ox);
  p.div_k.divmod(plane, img, k);
  const int c = p.div_mult.div(k);
  const float* xp = p.x + (int64_t(img) * p.C + c) * p.H * p.W;
  const float* wp = p.w + int64_t(k) * p.R * p.S;
  const int iy0 = oy * p.sh - p.ph, ix0 = ox * p.sw - p.pw;
  float acc = p.bias ? FL_LDG(p.bias + k) : 0.0f;
  for (int r = 0; r < p.R; ++r) {
    const int iy = iy0 + r * p.dh;
    if (unsigned(iy) >= unsigned(p.H)) continue;
    const float* row = xp + iy * p.W;
    for (int s = 0; s < p.S; ++s) {
      const int ix = ix0 + s * p.dw;
      if (unsigned(ix) < unsigned(p.W)) acc = fmaf(FL_LDG(wp + r * p.S + s), FL_LDG(row + ix), acc);
    }
  }
  return acc;
}

// Outputs ox0 .. ox0+3 of output row (img, k, oy): the forward kernel's unit of work. Four
// outputs per thread share the index decomposition, the weight loads and the row bounds checks
// (one output per thread spent as many integer instructions on its indices as on its 9 FMAs).
// Returns how many of the 4 are inside the row; v[j] for j < that count.
FL_HD int dw_forward_row4(const DwParams& p, int e4, float (&v)[4]) {
  int row, q, plane, oy, img, k;
  p.div_ow4.divmod(e4, row, q);  // e4 = ((img * K + k) * OH + oy) * ceil(OW / 4) + q
  p.div_oh.divmod(row, plane, oy);
  p.div_k.divmod(plane, img, k);
  const int ox0 = q * 4;
  const int cnt = p.OW - ox0 < 4 ? p.OW - ox0 : 4;
  const int c = p.div_mult.div(k);
  const float* xp = p.x + (int64_t(img) * p.C + c) * p.H * p.W;
  const float* wp = p.w + int64_t(k) * p.R * p.S;
  const float b = p.bias ? FL_LDG(p.bias + k) : 0.0f;
  FL_UNROLL for (int j = 0; j < 4; ++j) v[j] = b;
  const int iy0 = oy * p.sh - p.ph, ix0 = ox0 * p.sw - p.pw;
  for (int r = 0; r < p.R; ++r) {
    const int iy = iy0 + r * p.dh;
    if (unsigned(iy) >= unsigned(p.H)) continue;
    const float* xr = xp + iy * p.W;
    for (int s = 0; s < p.S; ++s) {
      const float w = FL_LDG(wp + r * p.S + s);
      const int ix = ix0 + s * p.dw;
      FL_UNROLL for (int j = 0; j < 4; ++j) {
        const int xj = ix + j * p.sw;
        if (j < cnt && unsigned(xj) < unsigned(p.W)) v[j] = fmaf(w, FL_LDG(xr + xj), v[j]);
      }
    }
  }
  return cnt;
}

// dx at flat index e of (n, C, H, W).
FL_HD float dw_backward_data_at(const DwParams& p, const float* dy, int e) {
  int plane, pix, iy, ix, img, c;
  p.div_hw.divmod(e, plane, pix);
  p.div_w.divmod(pix, iy, ix);
  p.div_c.divmod(plane, img, c);
  float acc = p.bias ? FL_LDG(p.bias + c) : 0.0f;
  for (int m = 0; m < p.mult; ++m) {
    const int k = c * p.mult + m;
    const float* gp = dy + (int64_t(img) * p.K + k) * p.OH * p.OW;
    const float* wp = p.w + int64_t(k) * p.R * p.S;
    for (int r = 0; r < p.R; ++r) {
      const int a = iy + p.ph - r * p.dh;
      if (a < 0) break;  // a decreases with r
      int oy, ry;
      p.div_sh.divmod(a, oy, ry);
      if (ry != 0 || oy >= p.OH) continue;
      for (int s = 0; s < p.S; ++s) {
        const int b = ix + p.pw - s * p.dw;
        if (b < 0) break;
        int ox, rx;
        p.div_sw.divmod(b, ox, rx);
        if (rx != 0 || ox >= p.OW) continue;
        acc = fmaf(FL_LDG(wp + r * p.S + s), FL_LDG(gp + oy * p.OW + ox), acc);
      }
    }
  }
  return acc;
}

// Weight gradient: taps t0 .. t0 + kDwTaps - 1 of channel k accumulated in registers; q runs
// over (image - img0, output pixel) of the block's images.
constexpr int kDwTaps = 9;
FL_HD void dw_weight_taps(const DwParams& p, int t0, float (&acc)[kDwTaps], int (&toff_y)[kDwTaps],
                          int (&toff_x)[kDwTaps]) {
  const int rs = p.R * p.S;
  FL_UNROLL
  for (int t = 0; t < kDwTaps; ++t) {
    acc[t] = 0.0f;
    const int tap = t0 + t < rs ? t0 + t : rs - 1;  // past the end: a duplicate, never stored
    toff_y[t] = (tap / p.S) * p.dh - p.ph;
    toff_x[t] = (tap % p.S) * p.dw - p.pw;
  }
}
FL_HD void dw_weight_accumulate(const DwParams& p, const float* dy, int k, int img0, int q, const int (&toff_y)[kDwTaps],
                                const int (&toff_x)[kDwTaps], float (&acc)[kDwTaps]) {
  int il, pix, oy, ox;
  p.div_ohw.divmod(q, il, pix);
  p.div_ow.divmod(pix, oy, ox);
  const int img = img0 + il;
  const int c = p.div_mult.div(k);
  const float g = FL_LDG(dy + (int64_t(img) * p.K + k) * p.OH * p.OW + pix);
  const float* xp = p.x + (int64_t(img) * p.C + c) * p.H * p.W;
  FL_UNROLL
  for (int t = 0; t < kDwTaps; ++t) {
    const int iy = oy * p.sh + toff_y[t], ix = ox * p.sw + toff_x[t];
    if (unsigned(iy) < unsigned(p.H) && unsigned(ix) < unsigned(p.W)) acc[t] = fmaf(g, FL_LDG(xp + iy * p.W + ix), acc[t]);
  }
}

// ---- Winograd F(2x2, 3x3) (stride 1, dilation 1, 3x3, groups 1; opt-in) ------------------------
// y tile (2x2) = A^T [ (G g G^T) .* (B^T d B) ] A over a 4x4 input tile d: 16 elementwise
// products per tile, done as 16 GEMMs over channels (M[xi] = U[xi] V[xi]) - 2.25x fewer
// multiplies than the direct convolution, traded for transform traffic (V and M are 4x the
// input and output). Layouts: V[xi][c][p], U[xi][k][c], M[xi][k][p], p = (img*TH + ty)*TW + tx.
struct WinoGeom {
  int n, C, H, W, K, OH, OW, ph, pw, TH, TW;
  int64_t P;  // n * TH * TW tiles
};

// V[:, c, p] for tile p of channel c (the 16 values, written at stride C*P).
FL_HD void wino_input_tile(const WinoGeom& g, const float* x, float* V, int c, int64_t p) {
  const int64_t tiles = int64_t(g.TH) * g.TW;
  const int img = int(p / tiles);
  const int t = int(p - int64_t(img) * tiles);
  const int ty = t / g.TW, tx = t - (t / g.TW) * g.TW;
  const float* xp = x + (int64_t(img) * g.C + c) * g.H * g.W;
  float d[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      const int iy = 2 * ty - g.ph + i, ix = 2 * tx - g.pw + j;
      d[i][j] = (unsigned(iy) < unsigned(g.H) && unsigned(ix) < unsigned(g.W)) ? FL_LDG(xp + iy * g.W + ix) : 0.0f;
    }
  float t4[4][4];  // B^T d
  for (int j = 0; j < 4; ++j) {
    t4[0][j] = d[0][j] - d[2][j];
    t4[1][j] = d[1][j] + d[2][j];
    t4[2][j] = d[2][j] - d[1][j];
    t4[3][j] = d[1][j] - d[3][j];
  }
  const int64_t stride = int64_t(g.C) * g.P;
  float* v = V + int64_t(c) * g.P + p;
  for (int i = 0; i < 4; ++i) {  // (B^T d) B
    v[(i * 4 + 0) * stride] = t4[i][0] - t4[i][2];
    v[(i * 4 + 1) * stride] = t4[i][1] + t4[i][2];
    v[(i * 4 + 2) * stride] = t4[i][2] - t4[i][1];
    v[(i * 4 + 3) * stride] = t4[i][1] - t4[i][3];
  }
}

// U[:, k, c] = G g G^T for the 3x3 filter w[k, c].
FL_HD void wino_weight_tile(const float* w, float* U, int K, int C, int k, int c) {
  const float* gp = w + (int64_t(k) * C + c) * 9;
  float g[3][3];
  for (int i = 0; i < 9; ++i) g[i / 3][i % 3] = FL_LDG(gp + i);
  float t[4][3];  // G g
  for (int j = 0; j < 3; ++j) {
    t[0][j] = g[0][j];
    t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
    t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
    t[3][j] = g[2][j];
  }
  const int64_t stride = int64_t(K) * C;
  float* u = U + int64_t(k) * C + c;
  for (int i = 0; i < 4; ++i) {  // (G g) G^T
    u[(i * 4 + 0) * stride] = t[i][0];
    u[(i * 4 + 1) * stride] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
    u[(i * 4 + 2) * stride] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
    u[(i * 4 + 3) * stride] = t[i][2];
  }
}

// y's 2x2 tile p of output channel k from M[:, k, p] (+ bias).
FL_HD void wino_output_tile(const WinoGeom& g, const float* M, const float* bias, float* y, int k, int64_t p) {
  const int64_t stride = int64_t(g.K) * g.P;
  const float* mp = M + int64_t(k) * g.P + p;
  float m[4][4];
  for (int i = 0; i < 16; ++i) m[i / 4][i % 4] = FL_LDG(mp + i * stride);
  float s[2][4];  // A^T m
  for (int j = 0; j < 4; ++j) {
    s[0][j] = m[0][j] + m[1][j] + m[2][j];
    s[1][j] = m[1][j] - m[2][j] - m[3][j];
  }
  const float b = bias ? FL_LDG(bias + k) : 0.0f;
  const int64_t tiles = int64_t(g.TH) * g.TW;
  const int img = int(p / tiles);
  const int t = int(p - int64_t(img) * tiles);
  const int ty = t / g.TW, tx = t - (t / g.TW) * g.TW;
  float* yp = y + (int64_t(img) * g.K + k) * g.OH * g.OW;
  for (int i = 0; i < 2; ++i) {  // (A^T m) A
    const int oy = 2 * ty + i;
    if (oy >= g.OH) break;
    const float v0 = s[i][0] + s[i][1] + s[i][2] + b, v1 = s[i][1] - s[i][2] - s[i][3] + b;
    const int ox = 2 * tx;
    yp[oy * g.OW + ox] = v0;
    if (ox + 1 < g.OW) yp[oy * g.OW + ox + 1] = v1;
  }
}

// Grouped tile order (gemm.cu's): 8 tile-rows swept column by column, for L2 reuse.
FL_HD void tile_coords(int pid, int tiles_m, int tiles_n, int& tm, int& tn) {
  constexpr int kGroup = 8;
  const int per_group = kGroup * tiles_n;
  const int group = pid / per_group;
  const int first_m = group * kGroup;
  const int gsize = tiles_m - first_m < kGroup ? tiles_m - first_m : kGroup;
  const int local = pid - group * per_group;
  tm = first_m + local % gsize;
  tn = local / gsize;
}

}  // namespace igemm
}  // namespace cuda
}  // namespace fl
