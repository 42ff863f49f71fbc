// CUDA convolution: implicit GEMM for every pass (conv_igemm.cuh: the loaders and epilogues),
// direct kernels for depthwise, a per-channel reduction for the bias gradient. Contract in
// conv_cuda.h.
//
// Implicit GEMM engine (igemm_kernel): gemm.cu's float32 tile - 128x128x8 block tile (64x128
// for layers of <= 64 channels per group, where a 128-row tile would be half padding), 256
// threads, 8x8 (4x8) results per thread split 4+4 in each direction so every shared read is a
// float4, two shared buffers, the next k-tile's global loads in flight while the current one
// is multiplied (one barrier per k-tile). The operands are never materialised: each thread
// gathers its 4 elements of A and B straight from NCHW memory with the index state it set
// up once (the 4 output pixels it loads for, or the weight column it loads for), so a k-tile
// costs it 2 fast divisions and 8 predicated loads against 512 FMAs.
//   forward      M = K/groups (output channels), N = n*OH*OW, K = C/groups*R*S
//   backward x   M = C/groups, N = n*H*W, K = K/groups*R*S (stride > 1: the taps that do not
//                land on an output are zeros of the gather; wasted FMAs, not wrong ones)
//   backward w   M = K/groups, N = C/groups*R*S, K = n*OH*OW
// Split-K (gridDim.z): when the tiles alone fill less than ~2 waves (2 blocks/SM) - always for
// the weight gradient, and for the deep layers of the other two passes (ResNet's 512 x 7x7 at
// batch 32 is 52 tiles of 128x128 for 132 SMs) - the reduction is cut into slices whose partial
// sums meet through atomicAdd in a zeroed output (the summation order, hence the last bits, is
// then not deterministic run to run).
// Groups go over gridDim.y.
//
// Depthwise (groups == C, one input channel per group, K = mult*C): one thread per 4 outputs of
// a row (forward), per input element (data gradient: a gather, no atomics), and a block per
// (output channel, batch slice) accumulating the R*S taps in registers (weight gradient).
// 3x3 depthwise is memory bound: ~9 L1-hitting loads and 9 FMAs per output.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "conv/conv_cuda.h"
#include "conv/conv_igemm.cuh"
#include "core/cuda_check.cuh"
#include "core/cuda_math.cuh"
#include "gemm/gemm_cuda.h"

namespace fl {
namespace cuda {
namespace {

using igemm::kBK;
using igemm::kBN;
using igemm::kThreads;
constexpr int kPad = 4;  // shared rows BM+4 floats: the transposed stores of kq and kq+4 land 16 banks apart

// BM = 128: 8x8 results per thread (64 FMA per 4 shared float4 loads); BM = 64 (layers with
// <= 64 output channels per group, where a 128-row tile would be half padding): 4x8.
template <class Op, int BM>
__global__ void __launch_bounds__(kThreads, 2) igemm_kernel(const igemm::Params p) {
  static_assert(BM == 128 || BM == 64, "tile rows");
  static_assert(BM == 128 || Op::A_KCONTIG, "BM = 64 loads A in the k-contiguous role");
  constexpr int MI = BM / 16;  // result rows per thread
  __shared__ __align__(16) float As[2][kBK][BM + kPad];
  __shared__ __align__(16) float Bs[2][kBK][kBN + kPad];
  int tm, tn;
  igemm::tile_coords(int(blockIdx.x), p.tiles_m, p.tiles_n, tm, tn);
  const int group = int(blockIdx.y), split = int(blockIdx.z);
  const int m0 = tm * BM, n0 = tn * kBN;
  const int tid = int(threadIdx.x);
  const Op op(p, tid, m0, n0, group, split);
  const bool a_loader = BM == 128 || tid < 128;  // warp-uniform

  const int l_row = tid >> 1, l_kq = (tid & 1) * 4;  // k-contiguous role
  const int l_kk = tid >> 5, l_cq = (tid & 31) * 4;  // m/n-contiguous role
  float ra[4], rb[4];
  auto store_a = [&](int buf) {
    if (Op::A_KCONTIG) {
      if (a_loader) {
#pragma unroll
        for (int j = 0; j < 4; ++j) As[buf][l_kq + j][l_row] = ra[j];
      }
    } else {
      *reinterpret_cast<float4*>(&As[buf][l_kk][l_cq]) = make_float4(ra[0], ra[1], ra[2], ra[3]);
    }
  };
  auto store_b = [&](int buf) {
    if (Op::B_KCONTIG) {
#pragma unroll
      for (int j = 0; j < 4; ++j) Bs[buf][l_kq + j][l_row] = rb[j];
    } else {
      *reinterpret_cast<float4*>(&Bs[buf][l_kk][l_cq]) = make_float4(rb[0], rb[1], rb[2], rb[3]);
    }
  };
  auto load = [&](int k0) {
    if (a_loader) op.load_a(p, k0, ra);
    op.load_b(p, k0, rb);
  };

  const int tx = tid & 15, ty = tid >> 4;
  float acc[MI][8];
#pragma unroll
  for (int i = 0; i < MI; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  const int kend = op.kend;
  if (op.kbegin < kend) {
    load(op.kbegin);
    store_a(0);
    store_b(0);
    __syncthreads();
    int buf = 0;
    for (int k0 = op.kbegin; k0 < kend; k0 += kBK, buf ^= 1) {
      const bool more = k0 + kBK < kend;
      if (more) load(k0 + kBK);  // global loads in flight during the FMAs
#pragma unroll
      for (int kk = 0; kk < kBK; ++kk) {
        float af[MI];
        const float4 a0 = *reinterpret_cast<const float4*>(&As[buf][kk][ty * 4]);
        af[0] = a0.x; af[1] = a0.y; af[2] = a0.z; af[3] = a0.w;
        if (MI == 8) {
          const float4 a1 = *reinterpret_cast<const float4*>(&As[buf][kk][(64 + ty * 4) % BM]);
          af[MI - 4] = a1.x; af[MI - 3] = a1.y; af[MI - 2] = a1.z; af[MI - 1] = a1.w;
        }
        const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][kk][tx * 4]);
        const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][kk][64 + tx * 4]);
        const float bf[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
        for (int i = 0; i < MI; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(af[i], bf[j], acc[i][j]);
      }
      if (more) {
        store_a(buf ^ 1);
        store_b(buf ^ 1);
      }
      __syncthreads();
    }
  }

#pragma unroll
  for (int i = 0; i < MI; ++i) {
    const int row = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float v[4] = {acc[i][h * 4], acc[i][h * 4 + 1], acc[i][h * 4 + 2], acc[i][h * 4 + 3]};
      op.store(p, group, row, n0 + h * 64 + tx * 4, v);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Depthwise: the per-element bodies are conv_igemm.cuh's dw_* functions (shared with the CPU
// emulator); flat 32-bit element indices (one launch covers < 2^31 elements: image_chunk).
using igemm::DwParams;

// Four consecutive outputs of a row per thread (dw_forward_row4); consecutive threads take
// consecutive groups of a row, so a warp's loads and stores stay contiguous.
__global__ void __launch_bounds__(256) dw_forward_kernel(const DwParams p) {
  const int total = p.n * p.K * p.OH * p.ow4;
  for (int e4 = int(blockIdx.x * blockDim.x + threadIdx.x); e4 < total; e4 += int(gridDim.x * blockDim.x)) {
    float v[4];
    const int cnt = igemm::dw_forward_row4(p, e4, v);
    const int row = e4 / p.ow4, ox0 = (e4 - row * p.ow4) * 4;
    float* dst = p.y + int64_t(row) * p.OW + ox0;
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (j < cnt) dst[j] = v[j];
  }
}

// dx[img, c, iy, ix] = sum over the mult output channels of c and the taps that reach (iy, ix):
// a gather, no atomics.
__global__ void __launch_bounds__(256) dw_backward_data_kernel(const DwParams p, const float* __restrict__ dy,
                                                               float* __restrict__ dx) {
  const int total = p.n * p.C * p.H * p.W;
  for (int e = int(blockIdx.x * blockDim.x + threadIdx.x); e < total; e += int(gridDim.x * blockDim.x))
    dx[e] = igemm::dw_backward_data_at(p, dy, e);
}

// dW[k, 0, r, s] over the images [blockIdx.y * per, ...): taps in chunks of kDwTaps in registers,
// one block-wide sum per tap; atomicAdd when the batch is split over gridDim.y.
__global__ void __launch_bounds__(256) dw_backward_weight_kernel(const DwParams p, const float* __restrict__ dy,
                                                                 float* __restrict__ dw, int imgs_per_block,
                                                                 bool atomic) {
  __shared__ float red[32];
  const int k = int(blockIdx.x);
  const int img0 = int(blockIdx.y) * imgs_per_block;
  const int img1 = min(p.n, img0 + imgs_per_block);
  const int rs = p.R * p.S;
  const int count = (img1 - img0) * p.OH * p.OW;
  for (int t0 = 0; t0 < rs; t0 += igemm::kDwTaps) {
    float acc[igemm::kDwTaps];
    int toff_y[igemm::kDwTaps], toff_x[igemm::kDwTaps];
    igemm::dw_weight_taps(p, t0, acc, toff_y, toff_x);
    for (int q = int(threadIdx.x); q < count; q += int(blockDim.x))
      igemm::dw_weight_accumulate(p, dy, k, img0, q, toff_y, toff_x, acc);
#pragma unroll
    for (int t = 0; t < igemm::kDwTaps; ++t) {
      const float v = block_sum(acc[t], red);
      if (threadIdx.x == 0 && t0 + t < rs) {
        float* dst = dw + int64_t(k) * rs + t0 + t;
        if (atomic) atomicAdd(dst, v);
        else *dst = v;
      }
    }
  }
}

// Winograd F(2x2, 3x3) transforms (conv_igemm.cuh's wino_* bodies): one thread per (channel,
// tile), (filter), (output channel, tile); the 16 products in between are one batched sgemm.
__global__ void __launch_bounds__(256) wino_input_kernel(const igemm::WinoGeom g, const float* __restrict__ x,
                                                         float* __restrict__ V) {
  const int64_t total = int64_t(g.C) * g.P;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x)
    igemm::wino_input_tile(g, x, V, int(e / g.P), e % g.P);
}
__global__ void __launch_bounds__(256) wino_weight_kernel(const float* __restrict__ w, float* __restrict__ U, int K,
                                                          int C) {
  const int64_t total = int64_t(K) * C;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x)
    igemm::wino_weight_tile(w, U, K, C, int(e / C), int(e % C));
}
__global__ void __launch_bounds__(256) wino_output_kernel(const igemm::WinoGeom g, const float* __restrict__ M,
                                                          const float* __restrict__ bias, float* __restrict__ y) {
  const int64_t total = int64_t(g.K) * g.P;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x)
    igemm::wino_output_tile(g, M, bias, y, int(e / g.P), e % g.P);
}

// out[c] = sum_{i < n, q < hw} t[i, c, q]: one block per channel (deterministic order).
__global__ void __launch_bounds__(256) channel_sum_kernel(const float* __restrict__ t, float* __restrict__ out,
                                                          int64_t n, int64_t c, int64_t hw) {
  __shared__ float red[32];
  const int64_t ch = blockIdx.x;
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float* src = t + (i * c + ch) * hw;
    for (int64_t q = threadIdx.x; q < hw; q += blockDim.x) acc += __ldg(src + q);
  }
  acc = block_sum(acc, red);
  if (threadIdx.x == 0) out[ch] = acc;
}

// ---------------------------------------------------------------------------------------
int sm_count() {
  int dev = 0, n = 0;
  FL_CUDA_CHECK(cudaGetDevice(&dev));
  FL_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  return n > 0 ? n : 1;
}

constexpr int64_t kInt32Max = (int64_t(1) << 31) - 1;

void check_geometry(const Conv2d& g, const char* what) {
  FL_CHECK(g.n >= 0 && g.c > 0 && g.h > 0 && g.w > 0 && g.k > 0 && g.oh > 0 && g.ow > 0 && g.r > 0 && g.s > 0 &&
               g.sh > 0 && g.sw > 0 && g.ph >= 0 && g.pw >= 0 && g.dh > 0 && g.dw > 0 && g.groups > 0,
           what, ": bad geometry");
  FL_CHECK(g.c % g.groups == 0 && g.k % g.groups == 0, what, ": channels not divisible by groups");
  // The output extent is not re-derived here: conv_transpose2d passes geometries whose "output"
  // (its input) is shorter than the convolution formula gives (output_padding, asymmetric
  // "same" padding). Every kernel bounds its reads by H, W, OH and OW, so any extent is safe.
  // 32-bit indices inside one launch: one image of x and of y must fit, then the batch is cut
  // into chunks that do (image_chunk below).
  FL_CHECK(g.c * g.h * g.w <= kInt32Max && g.k * g.oh * g.ow <= kInt32Max && g.c * g.r * g.s <= kInt32Max &&
               g.k * g.r * g.s <= kInt32Max,
           what, ": one image is too large for the CUDA kernels' 32-bit indices");
}

// Images per launch so that x, y and the GEMM extents of a launch stay below 2^31 elements.
int64_t image_chunk(const Conv2d& g) {
  const int64_t per = std::max<int64_t>({g.c * g.h * g.w, g.k * g.oh * g.ow, 1});
  return std::max<int64_t>(1, std::min<int64_t>(g.n, kInt32Max / per));
}

bool is_depthwise(const Conv2d& g) { return g.groups > 1 && g.groups == g.c; }

igemm::Params base_params(const Conv2d& g) {
  igemm::Params p{};
  p.g = igemm::make_geom(g.n, g.c, g.h, g.w, g.k, g.oh, g.ow, g.r, g.s, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw,
                         g.groups);
  return p;
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// Tile rows for a GEMM of M rows (per group): 64 when a 128-row tile would be mostly padding.
int pick_bm(int M) { return M <= 64 ? 64 : 128; }

// Reduction slices so that ~2 waves of blocks run (2 blocks/SM): the deep layers (512 channels
// at 7x7, batch 32: 4 x 13 tiles of 128 for 132 SMs) would otherwise leave most SMs idle.
// Each slice keeps >= `min_slice` of the reduction; partial sums meet through atomics.
int pick_splits(int64_t tiles, int64_t kdim, int64_t min_slice, int sms) {
  int64_t splits = std::max<int64_t>(1, (2 * sms + tiles - 1) / tiles);
  splits = std::min<int64_t>({splits, std::max<int64_t>(1, kdim / min_slice), 64});
  return int(splits);
}

// Sets p.k_chunk (a multiple of 8) and p.atomic_out; returns the number of slices.
int set_split(igemm::Params& p, int splits) {
  int64_t kc = (int64_t(p.Kdim) + splits - 1) / splits;
  kc = std::max<int64_t>(kBK, (kc + kBK - 1) / kBK * kBK);
  p.k_chunk = int(kc);
  const int n = int((p.Kdim + kc - 1) / kc);
  return n < 1 ? 1 : n;
}

template <class Op>
void launch_igemm(igemm::Params& p, int bm, int groups, int splits, cudaStream_t s, const char* name) {
  p.tiles_m = (p.M + bm - 1) / bm;
  p.tiles_n = (p.N + kBN - 1) / kBN;
  FL_CHECK(groups <= 65535 && splits <= 65535, name, ": too many groups (", groups, ")");
  const dim3 grid(unsigned(p.tiles_m * p.tiles_n), unsigned(groups), unsigned(splits));
  if (bm == 64) igemm_kernel<Op, 64><<<grid, kThreads, 0, s>>>(p);
  else igemm_kernel<Op, 128><<<grid, kThreads, 0, s>>>(p);
  check_launch(name);
}

DwParams dw_params(const Conv2d& g, const float* x, const float* w, const float* bias, float* y) {
  return igemm::make_dw_params(g.n, g.c, g.h, g.w, g.k, g.oh, g.ow, g.r, g.s, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, x, w,
                               bias, y);
}

// FASTLAYERS_CUDA_CONV_ALGO=winograd (read at every call) sends eligible forward convolutions
// (3x3, stride 1, dilation 1, groups 1) through Winograd F(2x2, 3x3); the default stays the
// implicit GEMM until the GPU benchmark says which wins where.
bool winograd_eligible(const Conv2d& g) {
  return g.r == 3 && g.s == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.groups == 1;
}
bool use_winograd(const Conv2d& g) {
  const char* e = std::getenv("FASTLAYERS_CUDA_CONV_ALGO");
  return e && std::strcmp(e, "winograd") == 0 && winograd_eligible(g);
}

void winograd_forward(const Conv2d& c, const float* x, const float* w, const float* bias, float* y, cudaStream_t s) {
  igemm::WinoGeom g{};
  g.n = int(c.n); g.C = int(c.c); g.H = int(c.h); g.W = int(c.w); g.K = int(c.k); g.OH = int(c.oh); g.OW = int(c.ow);
  g.ph = c.ph; g.pw = c.pw;
  g.TH = int((c.oh + 1) / 2);
  g.TW = int((c.ow + 1) / 2);
  g.P = c.n * g.TH * g.TW;
  const size_t nv = size_t(16) * g.C * g.P, nu = size_t(16) * g.K * g.C, nm = size_t(16) * g.K * g.P;
  void* ws = nullptr;  // stream-ordered workspace: V, U, M
  FL_CUDA_CHECK(cudaMallocAsync(&ws, (nv + nu + nm) * sizeof(float), s));
  float* V = static_cast<float*>(ws);
  float* U = V + nv;
  float* M = U + nu;
  wino_weight_kernel<<<blocks_for(int64_t(g.K) * g.C, 256), 256, 0, s>>>(w, U, g.K, g.C);
  check_launch("wino_weight_kernel");
  wino_input_kernel<<<blocks_for(int64_t(g.C) * g.P, 256), 256, 0, s>>>(g, x, V);
  check_launch("wino_input_kernel");
  GemmCudaParams gp;
  gp.m = g.K; gp.n = g.P; gp.k = g.C;
  gp.a = U; gp.lda = g.C;
  gp.b = V; gp.ldb = g.P;
  gp.c = M; gp.ldc = g.P;
  gp.batch = 16;
  gp.stride_a = int64_t(g.K) * g.C;
  gp.stride_b = int64_t(g.C) * g.P;
  gp.stride_c = int64_t(g.K) * g.P;
  gp.dtype = DType::f32;
  gemm(gp, s);
  wino_output_kernel<<<blocks_for(int64_t(g.K) * g.P, 256), 256, 0, s>>>(g, M, bias, y);
  check_launch("wino_output_kernel");
  FL_CUDA_CHECK(cudaFreeAsync(ws, s));
}

}  // namespace

int conv2d_path(const Conv2d& g) { return use_winograd(g) ? 2 : (is_depthwise(g) ? 1 : 0); }

void conv2d_forward(const float* x, const float* weight, const float* bias, float* y, const Conv2d& g,
                    Stream stream) {
  check_geometry(g, "conv2d");
  const auto s = static_cast<cudaStream_t>(stream);
  const int64_t chunk = image_chunk(g);
  const int sms = g.n > 0 ? sm_count() : 1;
  for (int64_t i0 = 0; i0 < g.n; i0 += chunk) {
    Conv2d c = g;
    c.n = std::min(chunk, g.n - i0);
    const float* xc = x + i0 * g.c * g.h * g.w;
    float* yc = y + i0 * g.k * g.oh * g.ow;
    if (use_winograd(c)) {
      winograd_forward(c, xc, weight, bias, yc, s);
      continue;
    }
    if (is_depthwise(c)) {
      const DwParams p = dw_params(c, xc, weight, bias, yc);
      dw_forward_kernel<<<blocks_for(c.n * c.k * c.oh * p.ow4, 256), 256, 0, s>>>(p);
      check_launch("dw_forward_kernel");
      continue;
    }
    igemm::Params p = base_params(c);
    p.a_src = weight;
    p.b_src = xc;
    p.bias = bias;
    p.out = yc;
    p.M = p.g.Kg;
    p.N = int(c.n * c.oh * c.ow);
    p.Kdim = p.g.Cg * p.g.rs;
    p.vec_a = aligned16(weight) && p.Kdim % 4 == 0;
    p.vec_out = aligned16(yc) && p.g.ohw % 4 == 0;
    const int bm = pick_bm(p.M);
    const int64_t tiles = int64_t((p.M + bm - 1) / bm) * ((p.N + kBN - 1) / kBN) * c.groups;
    const int splits = set_split(p, pick_splits(tiles, p.Kdim, 512, sms));
    p.atomic_out = splits > 1;
    if (p.atomic_out)
      FL_CUDA_CHECK(cudaMemsetAsync(yc, 0, size_t(c.n * c.k * c.oh * c.ow) * sizeof(float), s));
    launch_igemm<igemm::FwdOp>(p, bm, c.groups, splits, s, "conv2d_forward (igemm_kernel)");
  }
}

void conv2d_backward_data(const float* dy, const float* weight, const float* bias, float* dx, const Conv2d& g,
                          Stream stream) {
  check_geometry(g, "conv2d_backward_data");
  const auto s = static_cast<cudaStream_t>(stream);
  const int64_t chunk = image_chunk(g);
  const int sms = g.n > 0 ? sm_count() : 1;
  for (int64_t i0 = 0; i0 < g.n; i0 += chunk) {
    Conv2d c = g;
    c.n = std::min(chunk, g.n - i0);
    const float* dyc = dy + i0 * g.k * g.oh * g.ow;
    float* dxc = dx + i0 * g.c * g.h * g.w;
    if (is_depthwise(c)) {
      const DwParams p = dw_params(c, nullptr, weight, bias, nullptr);
      dw_backward_data_kernel<<<blocks_for(c.n * c.c * c.h * c.w, 256), 256, 0, s>>>(p, dyc, dxc);
      check_launch("dw_backward_data_kernel");
      continue;
    }
    igemm::Params p = base_params(c);
    p.a_src = weight;
    p.b_src = dyc;
    p.bias = bias;
    p.out = dxc;
    p.M = p.g.Cg;
    p.N = int(c.n * c.h * c.w);
    p.Kdim = p.g.Kg * p.g.rs;
    p.vec_out = aligned16(dxc) && p.g.hw % 4 == 0;
    const int bm = pick_bm(p.M);
    const int64_t tiles = int64_t((p.M + bm - 1) / bm) * ((p.N + kBN - 1) / kBN) * c.groups;
    const int splits = set_split(p, pick_splits(tiles, p.Kdim, 512, sms));
    p.atomic_out = splits > 1;
    if (p.atomic_out)
      FL_CUDA_CHECK(cudaMemsetAsync(dxc, 0, size_t(c.n * c.c * c.h * c.w) * sizeof(float), s));
    launch_igemm<igemm::BwdDataOp>(p, bm, c.groups, splits, s, "conv2d_backward_data (igemm_kernel)");
  }
}

void conv2d_backward_weight(const float* dy, const float* x, float* dweight, float* dbias, const Conv2d& g,
                            Stream stream) {
  check_geometry(g, "conv2d_backward_weight");
  const auto s = static_cast<cudaStream_t>(stream);
  const int64_t wsize = g.k * (g.c / g.groups) * g.r * g.s;
  if (dbias) channel_sum(dy, dbias, g.n, g.k, g.oh * g.ow, stream);  // (zeros when n == 0)
  const int64_t chunk = image_chunk(g);
  const bool chunked = g.n > chunk;
  // Zeroed once when partial sums are added: split-K slices, batch chunks, or no images at all.
  bool zeroed = false;
  auto zero = [&] {
    if (!zeroed) FL_CUDA_CHECK(cudaMemsetAsync(dweight, 0, size_t(wsize) * sizeof(float), s));
    zeroed = true;
  };
  if (g.n == 0) zero();
  const int sms = sm_count();
  for (int64_t i0 = 0; i0 < g.n; i0 += chunk) {
    Conv2d c = g;
    c.n = std::min(chunk, g.n - i0);
    const float* dyc = dy + i0 * g.k * g.oh * g.ow;
    const float* xc = x + i0 * g.c * g.h * g.w;
    if (is_depthwise(c)) {
      const DwParams p = dw_params(c, xc, nullptr, nullptr, nullptr);
      // Enough blocks for ~2 waves: split the batch when the channels alone are too few.
      int64_t splits = std::max<int64_t>(1, (2 * sms + c.k - 1) / c.k);
      splits = std::min<int64_t>({splits, c.n, 65535});
      const int per = int((c.n + splits - 1) / splits);
      splits = (c.n + per - 1) / per;
      const bool atomic = splits > 1 || chunked;
      if (atomic) zero();
      FL_CHECK(c.k <= kInt32Max, "conv2d_backward_weight: too many channels");
      dw_backward_weight_kernel<<<dim3(unsigned(c.k), unsigned(splits)), 256, 0, s>>>(p, dyc, dweight, per, atomic);
      check_launch("dw_backward_weight_kernel");
      continue;
    }
    igemm::Params p = base_params(c);
    p.a_src = dyc;
    p.b_src = xc;
    p.out = dweight;
    p.M = p.g.Kg;
    p.N = p.g.Cg * p.g.rs;
    p.Kdim = int(c.n * c.oh * c.ow);
    p.vec_a = aligned16(dyc) && p.g.ohw % 4 == 0;
    // The reduction (n*OH*OW) is long and M x N small: split it over ~2 waves, slices >= 1024.
    const int bm = pick_bm(p.M);
    const int64_t tiles = int64_t((p.M + bm - 1) / bm) * ((p.N + kBN - 1) / kBN) * c.groups;
    const int splits = set_split(p, pick_splits(tiles, p.Kdim, 1024, sms));
    p.atomic_out = splits > 1 || chunked;
    if (p.atomic_out) zero();
    launch_igemm<igemm::BwdWeightOp>(p, bm, c.groups, splits, s, "conv2d_backward_weight (igemm_kernel)");
  }
}

void channel_sum(const float* t, float* out, index_t n, index_t c, index_t hw, Stream stream) {
  FL_CHECK(n >= 0 && c >= 0 && hw >= 0, "channel_sum: negative size");
  if (c == 0) return;
  FL_CHECK(c <= 2147483647LL, "channel_sum: too many channels");
  channel_sum_kernel<<<unsigned(c), 256, 0, static_cast<cudaStream_t>(stream)>>>(t, out, n, c, hw);
  check_launch("channel_sum_kernel");
}

}  // namespace cuda
}  // namespace fl
