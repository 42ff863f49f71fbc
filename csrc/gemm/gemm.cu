// CUDA GEMM: float32 on CUDA cores, float16/bfloat16 on tensor cores (mma.sync m16n8k16,
// float32 accumulation), one fused epilogue (alpha, beta * C, row/column bias, activation),
// strided batches. Contract in gemm_cuda.h.
//
// float32 (sgemm_kernel): 128x128x8 block tile, 256 threads, 8x8 results per thread split
// 4+4 in each direction (rows ty*4.. and 64+ty*4..) so that every shared-memory read is a
// float4 and a warp's B reads cover 16 consecutive float4 (conflict-free). Global loads are
// float4 when the rows are 16-byte aligned and the 4 elements are in bounds, scalar and
// predicated otherwise; the next k-tile is fetched into registers while the current one is
// multiplied, then stored to the other of two shared buffers (one barrier per k-tile).
// Per k-step a thread does 64 FMA for 4 float4 shared loads (16 FMA per load).
//
// half (tc_gemm_kernel): BMxBNx32 block tile, 8 warps, warp tile WMxWN of m16n8k16 MMAs,
// operands staged through a 4-deep cp.async pipeline (16-byte copies, zero-filled past the
// edges), fragments read with ldmatrix (.trans where the tile is stored the other way, so
// all four transpose combinations read global memory along its contiguous dimension).
// Shared rows are padded by 16 bytes: 8 consecutive rows of an ldmatrix then start in 8
// distinct 16-byte bank groups (row pitch 80 B or 272 B, both = 16 mod 128 or a permutation
// of the 8 groups), so ldmatrix is conflict-free without a swizzle. Rows that are not
// 16-byte aligned (odd leading dimensions) take a predicated element-wise path into the
// same shared layout: right for any shape, fast for the aligned ones.
// Blocks are numbered in groups of 8 tile-rows (Triton's grouped ordering) so that blocks
// running together share A and B panels in L2.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdlib>
#include <cstring>

#include "core/cuda_check.cuh"
#include "core/cuda_math.cuh"
#include "core/cuda_mma.cuh"
#include "core/cuda_num.cuh"
#include "gemm/gemm_cuda.h"

namespace fl {
namespace cuda {
namespace {

template <typename T>
struct KParams {
  int64_t m, n, k;
  const T* a;
  int64_t lda;
  const T* b;
  int64_t ldb;
  T* c;
  int64_t ldc;
  float alpha, beta;
  const T* row_bias;
  const T* col_bias;
  int act;
  int64_t stride_a, stride_b, stride_c;
  int tiles_m, tiles_n;
  bool vec_a, vec_b, vec_c;  // rows (and batch strides) aligned for the wide accesses
};

// Grouped tile order: GROUP tile-rows are swept column by column.
__device__ __forceinline__ void tile_coords(int pid, int tiles_m, int tiles_n, int& tm, int& tn) {
  constexpr int kGroup = 8;
  const int per_group = kGroup * tiles_n;
  const int group = pid / per_group;
  const int first_m = group * kGroup;
  const int gsize = min(tiles_m - first_m, kGroup);
  const int local = pid - group * per_group;
  tm = first_m + local % gsize;
  tn = local / gsize;
}

template <typename T>
__device__ __forceinline__ float finish(const KParams<T>& p, const T* c, float acc, int64_t row, int64_t col) {
  float v = p.alpha * acc;
  if (p.beta != 0.0f) v += p.beta * Num<T>::to_f(c[row * p.ldc + col]);
  if (p.row_bias) v += Num<T>::to_f(p.row_bias[row]);
  if (p.col_bias) v += Num<T>::to_f(p.col_bias[col]);
  return gemm_act(p.act, v);
}

// ---------------------------------------------------------------------------------------
// float32 on CUDA cores
constexpr int kSBM = 128, kSBN = 128, kSBK = 8, kSThreads = 256, kSPad = 4;

template <bool TA, bool TB>
__global__ void __launch_bounds__(kSThreads, 2) sgemm_kernel(KParams<float> p) {
  // +4 floats per row: the transposed scalar stores of the k-contiguous loaders (rows kq and
  // kq+4 of the same column) land 16 banks apart instead of on the same bank.
  __shared__ __align__(16) float As[2][kSBK][kSBM + kSPad];
  __shared__ __align__(16) float Bs[2][kSBK][kSBN + kSPad];

  int tm, tn;
  tile_coords(blockIdx.x, p.tiles_m, p.tiles_n, tm, tn);
  const int64_t bz = blockIdx.y;
  const float* __restrict__ A = p.a + bz * p.stride_a;
  const float* __restrict__ B = p.b + bz * p.stride_b;
  float* C = p.c + bz * p.stride_c;
  const int64_t m0 = int64_t(tm) * kSBM, n0 = int64_t(tn) * kSBN;
  const int tid = threadIdx.x;
  const int64_t m = p.m, n = p.n, k = p.k;

  // Loader roles: along the contiguous dimension 4 elements per thread.
  //   k-contiguous tile (A not transposed, B transposed): row tid/2, k offset (tid%2)*4
  //   m/n-contiguous tile: k row tid/32, column offset (tid%32)*4
  const int l_row = tid >> 1, l_kq = (tid & 1) * 4;
  const int l_kk = tid >> 5, l_cq = (tid & 31) * 4;
  float ra[4], rb[4];
  // Each loader's source at k0 = 0 and its advance per unit of k, hoisted out of the loop
  // (the 64-bit index arithmetic otherwise costs the registers that made NN spill).
  const float* a_base = !TA ? A + (m0 + l_row) * p.lda + l_kq : A + int64_t(l_kk) * p.lda + (m0 + l_cq);
  const int64_t a_step = !TA ? 1 : p.lda;
  const bool a_row_ok = !TA ? (m0 + l_row < m) : true;
  const float* b_base = !TB ? B + int64_t(l_kk) * p.ldb + (n0 + l_cq) : B + (n0 + l_row) * p.ldb + l_kq;
  const int64_t b_step = !TB ? p.ldb : 1;
  const bool b_row_ok = !TB ? true : (n0 + l_row < n);

  // 4 consecutive elements src[0..3], the first at contiguous index ci (< lim to be valid).
  auto load4 = [](float (&r)[4], const float* src, bool row_ok, int64_t ci, int64_t lim, bool vec) {
    if (!row_ok) {
#pragma unroll
      for (int j = 0; j < 4; ++j) r[j] = 0.0f;
    } else if (vec && ci + 3 < lim) {
      const float4 v = __ldg(reinterpret_cast<const float4*>(src));
      r[0] = v.x; r[1] = v.y; r[2] = v.z; r[3] = v.w;
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) r[j] = ci + j < lim ? __ldg(src + j) : 0.0f;
    }
  };
  auto load_a = [&](int64_t k0) {
    const float* src = a_base + k0 * a_step;
    if (!TA) load4(ra, src, a_row_ok, l_kq + k0, k, p.vec_a);
    else load4(ra, src, l_kk + k0 < k, m0 + l_cq, m, p.vec_a);
  };
  auto load_b = [&](int64_t k0) {
    const float* src = b_base + k0 * b_step;
    if (!TB) load4(rb, src, l_kk + k0 < k, n0 + l_cq, n, p.vec_b);
    else load4(rb, src, b_row_ok, l_kq + k0, k, p.vec_b);
  };
  auto store_a = [&](int buf) {
    if (!TA) {
#pragma unroll
      for (int j = 0; j < 4; ++j) As[buf][l_kq + j][l_row] = ra[j];
    } else {
      *reinterpret_cast<float4*>(&As[buf][l_kk][l_cq]) = make_float4(ra[0], ra[1], ra[2], ra[3]);
    }
  };
  auto store_b = [&](int buf) {
    if (!TB) {
      *reinterpret_cast<float4*>(&Bs[buf][l_kk][l_cq]) = make_float4(rb[0], rb[1], rb[2], rb[3]);
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) Bs[buf][l_kq + j][l_row] = rb[j];
    }
  };

  const int tx = tid & 15, ty = tid >> 4;
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  const int64_t ktiles = (k + kSBK - 1) / kSBK;
  if (ktiles > 0) {
    load_a(0);
    load_b(0);
    store_a(0);
    store_b(0);
    __syncthreads();
    for (int64_t kt = 0; kt < ktiles; ++kt) {
      const int buf = int(kt & 1);
      const bool more = kt + 1 < ktiles;
      if (more) {  // global loads in flight while this tile is multiplied
        load_a((kt + 1) * kSBK);
        load_b((kt + 1) * kSBK);
      }
#pragma unroll
      for (int kk = 0; kk < kSBK; ++kk) {
        const float4 a0 = *reinterpret_cast<const float4*>(&As[buf][kk][ty * 4]);
        const float4 a1 = *reinterpret_cast<const float4*>(&As[buf][kk][64 + ty * 4]);
        const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][kk][tx * 4]);
        const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][kk][64 + tx * 4]);
        const float af[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
        const float bf[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(af[i], bf[j], acc[i][j]);
      }
      if (more) {  // the other buffer was last read before the previous barrier
        store_a(buf ^ 1);
        store_b(buf ^ 1);
      }
      __syncthreads();
    }
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t row = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
    if (row >= m) continue;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t col = n0 + h * 64 + tx * 4;
      if (p.vec_c && col + 3 < n) {
        float v[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) v[j] = finish(p, C, acc[i][h * 4 + j], row, col + j);
        *reinterpret_cast<float4*>(C + row * p.ldc + col) = make_float4(v[0], v[1], v[2], v[3]);
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (col + j < n) C[row * p.ldc + col + j] = finish(p, C, acc[i][h * 4 + j], row, col + j);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// float16 / bfloat16 on tensor cores
using namespace ptx;  // cp.async, ldmatrix, mma.sync: core/cuda_mma.cuh

// Copy a ROWS x COLS tile (COLS contiguous in global memory and in shared memory, shared row
// pitch LDS elements) starting at (row0, col0) of a matrix with row stride ldg; elements at
// row >= rows_lim or col >= cols_lim become 0. `aligned`: ldg and g are 16-byte aligned, so
// each 8-element chunk is one cp.async (partial chunks at the right edge copy fewer bytes and
// zero-fill the rest); otherwise each element is loaded and predicated on its own.
template <typename T, int ROWS, int COLS, int LDS, int THREADS>
__device__ __forceinline__ void load_tile(T* s, const T* g, int64_t ldg, int64_t row0, int64_t col0,
                                          int64_t rows_lim, int64_t cols_lim, bool aligned) {
  constexpr int kPerRow = COLS / 8;
  constexpr int kChunks = ROWS * kPerRow;
  static_assert(kChunks % THREADS == 0, "tile chunks must divide evenly among the threads");
#pragma unroll
  for (int i = 0; i < kChunks / THREADS; ++i) {
    const int c = int(threadIdx.x) + i * THREADS;
    const int r = c / kPerRow, cc = (c % kPerRow) * 8;
    const int64_t gr = row0 + r, gc = col0 + cc;
    T* dst = s + r * LDS + cc;
    if (aligned) {
      int bytes = 0;
      const T* src = g;  // any valid address: nothing is read when bytes == 0
      if (gr < rows_lim && gc < cols_lim) {
        const int64_t rem = cols_lim - gc;
        bytes = rem >= 8 ? 16 : int(rem) * int(sizeof(T));
        src = g + gr * ldg + gc;
      }
      cp_async_16(dst, src, bytes);
    } else {
      union {
        uint4 u;
        T e[8];
      } v;
      v.u = make_uint4(0u, 0u, 0u, 0u);
      if (gr < rows_lim) {
        const T* src = g + gr * ldg + gc;
#pragma unroll
        for (int e = 0; e < 8; ++e)
          if (gc + e < cols_lim) v.e[e] = src[e];
      }
      *reinterpret_cast<uint4*>(dst) = v.u;
    }
  }
}

template <int BM_, int BN_, int WM_, int WN_, int STAGES_>
struct TcConfig {
  static constexpr int BM = BM_, BN = BN_, BK = 32, WM = WM_, WN = WN_, STAGES = STAGES_;
  static constexpr int WARPS_M = BM / WM, WARPS_N = BN / WN, THREADS = WARPS_M * WARPS_N * 32;
  static constexpr int MT = WM / 16, NT = WN / 8;
  static_assert(NT % 2 == 0, "B fragments are loaded two n8 tiles at a time");
};

template <typename T, bool TA, bool TB, class Cfg>
struct TcLayout {
  // A tile: TA ? [BK][BM + 8] : [BM][BK + 8];  B tile: TB ? [BN][BK + 8] : [BK][BN + 8]
  static constexpr int LDA = TA ? Cfg::BM + 8 : Cfg::BK + 8;
  static constexpr int LDB = TB ? Cfg::BK + 8 : Cfg::BN + 8;
  static constexpr int A_ELEMS = (TA ? Cfg::BK : Cfg::BM) * LDA;
  static constexpr int B_ELEMS = (TB ? Cfg::BN : Cfg::BK) * LDB;
  static constexpr int SMEM_BYTES = Cfg::STAGES * (A_ELEMS + B_ELEMS) * int(sizeof(T));
  static_assert((A_ELEMS * sizeof(T)) % 16 == 0 && (B_ELEMS * sizeof(T)) % 16 == 0, "16-byte aligned stages");
};

template <typename T, bool TA, bool TB, class Cfg>
__global__ void __launch_bounds__(Cfg::THREADS) tc_gemm_kernel(KParams<T> p) {
  using L = TcLayout<T, TA, TB, Cfg>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, STAGES = Cfg::STAGES;
  constexpr int MT = Cfg::MT, NT = Cfg::NT, THREADS = Cfg::THREADS;
  extern __shared__ __align__(16) unsigned char tc_smem[];
  T* sA = reinterpret_cast<T*>(tc_smem);
  T* sB = sA + STAGES * L::A_ELEMS;

  int tm, tn;
  tile_coords(blockIdx.x, p.tiles_m, p.tiles_n, tm, tn);
  const int64_t bz = blockIdx.y;
  const T* A = p.a + bz * p.stride_a;
  const T* B = p.b + bz * p.stride_b;
  T* C = p.c + bz * p.stride_c;
  const int64_t m0 = int64_t(tm) * BM, n0 = int64_t(tn) * BN;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warp_m = warp / Cfg::WARPS_N, warp_n = warp % Cfg::WARPS_N;

  auto load_stage = [&](int stage, int64_t k0) {
    T* a_s = sA + stage * L::A_ELEMS;
    T* b_s = sB + stage * L::B_ELEMS;
    if (!TA)
      load_tile<T, BM, BK, L::LDA, THREADS>(a_s, A, p.lda, m0, k0, p.m, p.k, p.vec_a);
    else
      load_tile<T, BK, BM, L::LDA, THREADS>(a_s, A, p.lda, k0, m0, p.k, p.m, p.vec_a);
    if (TB)
      load_tile<T, BN, BK, L::LDB, THREADS>(b_s, B, p.ldb, n0, k0, p.n, p.k, p.vec_b);
    else
      load_tile<T, BK, BN, L::LDB, THREADS>(b_s, B, p.ldb, k0, n0, p.k, p.n, p.vec_b);
  };

  float acc[MT][NT][4];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  const int64_t ktiles = (p.k + BK - 1) / BK;
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ktiles) load_stage(s, int64_t(s) * BK);
    cp_async_commit();  // empty groups keep the group count in step with the tile count
  }

  for (int64_t kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<STAGES - 2>();  // this thread's copies of tile kt have landed
    __syncthreads();              // ... everyone's; and tile kt-1's buffer is free again
    const int64_t next = kt + STAGES - 1;
    if (next < ktiles) load_stage(int(next % STAGES), next * BK);
    cp_async_commit();

    const int stage = int(kt % STAGES);
    const T* a_s = sA + stage * L::A_ELEMS;
    const T* b_s = sB + stage * L::B_ELEMS;
#pragma unroll
    for (int ks = 0; ks < BK / 16; ++ks) {
      const int kc = ks * 16;
      unsigned af[MT][4];
      unsigned bfr[NT][2];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        const int mr = warp_m * Cfg::WM + mt * 16;
        if (!TA) {
          // matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15) -> a0..a3: lane -> row l%16, k (l/16)*8
          ldmatrix_x4(af[mt], a_s + (mr + (lane & 15)) * L::LDA + kc + (lane >> 4) * 8);
        } else {
          // stored [k][m]: lane -> k l%8 + (l/16)*8, m ((l/8)%2)*8, transposed on load
          ldmatrix_x4_trans(af[mt], a_s + (kc + (lane & 7) + (lane >> 4) * 8) * L::LDA + mr + ((lane >> 3) & 1) * 8);
        }
      }
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        const int nc = warp_n * Cfg::WN + np * 16;
        unsigned r[4];
        if (TB) {
          // stored [n][k]: matrices (n 0-7,k 0-7) (n 0-7,k 8-15) (n 8-15,k 0-7) (n 8-15,k 8-15)
          ldmatrix_x4(r, b_s + (nc + (lane & 7) + (lane >> 4) * 8) * L::LDB + kc + ((lane >> 3) & 1) * 8);
        } else {
          // stored [k][n]: the same four matrices, transposed on load
          ldmatrix_x4_trans(r, b_s + (kc + (lane & 7) + ((lane >> 3) & 1) * 8) * L::LDB + nc + (lane >> 4) * 8);
        }
        bfr[2 * np][0] = r[0];
        bfr[2 * np][1] = r[1];
        bfr[2 * np + 1][0] = r[2];
        bfr[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) mma_16816<T>(acc[mt][nt], af[mt], bfr[nt]);
    }
  }
  cp_async_wait<0>();

  // Accumulator (m16n8): c0,c1 at (row l/4, cols 2(l%4)+{0,1}); c2,c3 eight rows below.
  const bool pair_ok = p.vec_c;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int64_t col = n0 + warp_n * Cfg::WN + nt * 8 + (lane & 3) * 2;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t row = m0 + warp_m * Cfg::WM + mt * 16 + (lane >> 2) + h * 8;
        if (row >= p.m || col >= p.n) continue;
        const float v0 = finish(p, C, acc[mt][nt][2 * h], row, col);
        if (col + 1 < p.n) {
          const float v1 = finish(p, C, acc[mt][nt][2 * h + 1], row, col + 1);
          if (pair_ok) {
            union {
              unsigned u;
              T e[2];
            } pk;
            pk.e[0] = Num<T>::from_f(v0);
            pk.e[1] = Num<T>::from_f(v1);
            *reinterpret_cast<unsigned*>(C + row * p.ldc + col) = pk.u;
          } else {
            C[row * p.ldc + col] = Num<T>::from_f(v0);
            C[row * p.ldc + col + 1] = Num<T>::from_f(v1);
          }
        } else {
          C[row * p.ldc + col] = Num<T>::from_f(v0);
        }
      }
    }
  }
}

using TcDefault = TcConfig<128, 128, 64, 32, 4>;  // 256 threads, 80 KB shared (2 blocks/SM)
using TcWide = TcConfig<128, 256, 64, 64, 4>;     // 256 threads, ~120 KB shared (1 block/SM)

bool aligned_to(const void* ptr, int64_t ld, int64_t stride, int elems) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && ld % elems == 0 && stride % elems == 0;
}

template <typename T>
KParams<T> make_params(const GemmCudaParams& g, int bm, int bn) {
  KParams<T> p{};
  p.m = g.m; p.n = g.n; p.k = g.k;
  p.a = static_cast<const T*>(g.a); p.lda = g.lda;
  p.b = static_cast<const T*>(g.b); p.ldb = g.ldb;
  p.c = static_cast<T*>(g.c); p.ldc = g.ldc;
  p.alpha = g.alpha; p.beta = g.beta;
  p.row_bias = static_cast<const T*>(g.row_bias);
  p.col_bias = static_cast<const T*>(g.col_bias);
  p.act = g.act;
  p.stride_a = g.stride_a; p.stride_b = g.stride_b; p.stride_c = g.stride_c;
  const int64_t tiles_m = (g.m + bm - 1) / bm, tiles_n = (g.n + bn - 1) / bn;
  FL_CHECK(tiles_m * tiles_n < (int64_t(1) << 31), "gemm: ", g.m, " x ", g.n, " is too large for one launch");
  p.tiles_m = int(tiles_m);
  p.tiles_n = int(tiles_n);
  constexpr int kVec = 16 / int(sizeof(T));  // elements per 16-byte access
  p.vec_a = aligned_to(g.a, g.lda, g.batch > 1 ? g.stride_a : 0, kVec);
  p.vec_b = aligned_to(g.b, g.ldb, g.batch > 1 ? g.stride_b : 0, kVec);
  // C: float4 stores (float32) or 2-element stores (half).
  const int c_elems = sizeof(T) == 4 ? 4 : 2;
  p.vec_c = reinterpret_cast<uintptr_t>(g.c) % (sizeof(T) * c_elems) == 0 && g.ldc % c_elems == 0 &&
            (g.batch > 1 ? g.stride_c : 0) % c_elems == 0;
  return p;
}

// Batches beyond gridDim.y's 65535 go in further launches with shifted base pointers.
template <typename T, typename Kernel>
void launch_batched(Kernel kern, KParams<T> p, int64_t batch, int threads, int smem, cudaStream_t s,
                    const char* name) {
  const int64_t tiles = int64_t(p.tiles_m) * p.tiles_n;
  for (int64_t b0 = 0; b0 < batch; b0 += 65535) {
    const int64_t nb = batch - b0 < 65535 ? batch - b0 : 65535;
    KParams<T> q = p;
    q.a += b0 * p.stride_a;
    q.b += b0 * p.stride_b;
    q.c += b0 * p.stride_c;
    kern<<<dim3(unsigned(tiles), unsigned(nb)), threads, smem, s>>>(q);
    check_launch(name);
  }
}

template <typename T, bool TA, bool TB, class Cfg>
void launch_tc(const GemmCudaParams& g, cudaStream_t s) {
  using L = TcLayout<T, TA, TB, Cfg>;
  auto kern = tc_gemm_kernel<T, TA, TB, Cfg>;
  // Above 48 KB a block's dynamic shared memory must be opted into, per kernel.
  FL_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, L::SMEM_BYTES));
  launch_batched<T>(kern, make_params<T>(g, Cfg::BM, Cfg::BN), g.batch, Cfg::THREADS, L::SMEM_BYTES, s,
                    "tc_gemm_kernel");
}

template <typename T, class Cfg>
void dispatch_tc(const GemmCudaParams& g, cudaStream_t s) {
  if (!g.trans_a && !g.trans_b) launch_tc<T, false, false, Cfg>(g, s);
  else if (!g.trans_a && g.trans_b) launch_tc<T, false, true, Cfg>(g, s);
  else if (g.trans_a && !g.trans_b) launch_tc<T, true, false, Cfg>(g, s);
  else launch_tc<T, true, true, Cfg>(g, s);
}

template <bool TA, bool TB>
void launch_sgemm(const GemmCudaParams& g, cudaStream_t s) {
  launch_batched<float>(sgemm_kernel<TA, TB>, make_params<float>(g, kSBM, kSBN), g.batch, kSThreads, 0, s,
                        "sgemm_kernel");
}

int env_config() {
  static const int cfg = [] {
    const char* e = std::getenv("FASTLAYERS_CUDA_GEMM_CFG");
    return (e && std::strcmp(e, "1") == 0) ? 1 : 0;
  }();
  return cfg;
}

}  // namespace

void gemm(const GemmCudaParams& g, Stream stream) {
  FL_CHECK(g.m >= 0 && g.n >= 0 && g.k >= 0 && g.batch >= 0, "gemm: negative size (m=", g.m, ", n=", g.n,
           ", k=", g.k, ", batch=", g.batch, ")");
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  // Leading dimensions must cover a row whenever there is more than one row to step over.
  const int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
  const int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
  FL_CHECK(a_rows <= 1 || g.lda >= a_cols, "gemm: lda=", g.lda, " is smaller than a row of A (", a_cols, ")");
  FL_CHECK(b_rows <= 1 || g.ldb >= b_cols, "gemm: ldb=", g.ldb, " is smaller than a row of B (", b_cols, ")");
  FL_CHECK(g.m <= 1 || g.ldc >= g.n, "gemm: ldc=", g.ldc, " is smaller than a row of C (", g.n, ")");
  FL_CHECK(g.k == 0 || (g.a && g.b), "gemm: null operand");
  FL_CHECK(g.c, "gemm: null output");
  const auto s = static_cast<cudaStream_t>(stream);
  const int cfg = g.config >= 0 ? g.config : env_config();
  switch (g.dtype) {
    case DType::f32:
      if (!g.trans_a && !g.trans_b) launch_sgemm<false, false>(g, s);
      else if (!g.trans_a && g.trans_b) launch_sgemm<false, true>(g, s);
      else if (g.trans_a && !g.trans_b) launch_sgemm<true, false>(g, s);
      else launch_sgemm<true, true>(g, s);
      break;
    case DType::f16:
      if (cfg == 1) dispatch_tc<__half, TcWide>(g, s);
      else dispatch_tc<__half, TcDefault>(g, s);
      break;
    case DType::bf16:
      if (cfg == 1) dispatch_tc<__nv_bfloat16, TcWide>(g, s);
      else dispatch_tc<__nv_bfloat16, TcDefault>(g, s);
      break;
    default:
      FL_CHECK(false, "gemm: unknown dtype code ", int(g.dtype));
  }
}

}  // namespace cuda
}  // namespace fl
