// CUDA LSTM / Elman RNN layers, forward and backward through time. Contract in rnn_cuda.h.
//
// Forward, per layer and direction:
//   1. the input projections of all T steps as one GEMM: work (T*B, G*H) = x W_ih^T + b_ih
//      (gemm.cu's sgemm, the bias in its epilogue);
//   2. one launch per step of rnn_step_kernel: the recurrent product h_{t-1} W_hh^T with the
//      gate nonlinearities and the cell update fused into its epilogue (+ b_hh, + the step's
//      projection); it writes h_t into y (the next step's input), c_t, and in training the
//      activated gates and c_t into the reserve.
// Backward through time: one launch per step as well (T + 1 in all): the product
// dgates_{t+1} W_hh (W_hh transposed once into a workspace so both passes read rows along k)
// gives dh flowing into step t, and the epilogue turns it into dgates_t (and the running dc),
// read by the next launch. Then three GEMMs over all steps: dW_ih = dG^T x, dW_hh = dG^T h_prev
// (h_prev = y shifted by one step, + h0's step), dx (+)= dG W_ih, and a column sum for db.
//
// rnn_step_kernel: a block computes 32 rows of the recurrent product (LSTM: the 4 gates of 8
// hidden units, so that one thread's epilogue has all four; RNN and backward: 32 units) for
// BB = 4*BPT batch rows. 256 threads = 32 output groups (4 rows x BPT batch rows each) x 8
// lanes splitting k (float4 loads along k, 16-byte chunks interleaved over the 8 lanes so a
// group's lanes read 128 contiguous bytes); the 8 partial sums meet through 3 shuffles, then a
// shared tile feeds the epilogue, one thread per (batch row, unit). Weights and h are read
// straight from global memory (L2-resident: W_hh of H = 512 is 4 MB).
// BPT = 2 (8 batch rows per block) favours parallelism at small batch; BPT = 8 reads W_hh a
// quarter as often when there are enough blocks (see pick_bpt).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/cuda_check.cuh"
#include "core/cuda_math.cuh"
#include "gemm/gemm_cuda.h"
#include "rnn/rnn_cuda.h"
#include "rnn/rnn_step.cuh"

namespace fl {
namespace cuda {
namespace {

__device__ __forceinline__ float dot4(const float4 a, const float4 b, float acc) {
  acc = fmaf(a.x, b.x, acc);
  acc = fmaf(a.y, b.y, acc);
  acc = fmaf(a.z, b.z, acc);
  return fmaf(a.w, b.w, acc);
}

template <int KIND, int BPT, bool VEC>
__global__ void __launch_bounds__(256) rnn_step_kernel(const StepArgs a) {
  constexpr int BU = step_units<KIND>();  // hidden units per block
  constexpr int BB = 4 * BPT;             // batch rows per block
  __shared__ float S[32][BB + 1];
  const int tid = int(threadIdx.x), ks = tid & 7, og = tid >> 3, rq = og & 7, bp = og >> 3;
  const int u0 = int(blockIdx.x) * BU, b0 = int(blockIdx.y) * BB;
  const int H = a.H, K = a.K;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // With programmatic dependent launch: wait for the previous step's grid (a no-op otherwise),
  // then let the next step's launch begin while this one runs.
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" :::);
#endif

  if (a.X) {
    const float* wr[4];
    const float* xr[BPT];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      // Rows past the end read row 0 (always valid memory); their sums are never used.
      const int row = step_w_row<KIND>(u0, rq * 4 + i, H);
      wr[i] = a.W + int64_t(row < 0 ? 0 : row) * K;
    }
#pragma unroll
    for (int j = 0; j < BPT; ++j) {
      const int b = b0 + bp * BPT + j;
      xr[j] = a.X + int64_t(b < a.B ? b : 0) * a.ldx;
    }
    float acc[4][BPT];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < BPT; ++j) acc[i][j] = 0.0f;
    if (VEC) {
      // Unrolled so that several iterations' L2 loads are in flight at once: at H = 512 a lane
      // runs only 16 iterations, and one L2 round trip (~500 cycles) per iteration would be
      // most of the step.
#pragma unroll(BPT == 2 ? 4 : 2)
      for (int k = ks * 4; k < K; k += 32) {
        float4 w[4], x[BPT];
#pragma unroll
        for (int i = 0; i < 4; ++i) w[i] = __ldg(reinterpret_cast<const float4*>(wr[i] + k));
#pragma unroll
        for (int j = 0; j < BPT; ++j) x[j] = __ldg(reinterpret_cast<const float4*>(xr[j] + k));
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < BPT; ++j) acc[i][j] = dot4(w[i], x[j], acc[i][j]);
      }
    } else {
#pragma unroll 4
      for (int k = ks; k < K; k += 8) {
        float w[4], x[BPT];
#pragma unroll
        for (int i = 0; i < 4; ++i) w[i] = __ldg(wr[i] + k);
#pragma unroll
        for (int j = 0; j < BPT; ++j) x[j] = __ldg(xr[j] + k);
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < BPT; ++j) acc[i][j] = fmaf(w[i], x[j], acc[i][j]);
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < BPT; ++j) {
        float v = acc[i][j];
        v += __shfl_xor_sync(0xffffffffu, v, 1);
        v += __shfl_xor_sync(0xffffffffu, v, 2);
        v += __shfl_xor_sync(0xffffffffu, v, 4);
        if (ks == 0) S[rq * 4 + i][bp * BPT + j] = v;
      }
  } else {
    for (int e = tid; e < 32 * BB; e += 256) S[e / BB][e % BB] = 0.0f;
  }
  __syncthreads();

  for (int e = tid; e < BU * BB; e += 256) {
    const int u = e % BU, bl = e / BU;
    const int b = b0 + bl, unit = u0 + u;
    if (b >= a.B || unit >= H) continue;
    float sv[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int g = 0; g < (KIND == kFwdLstm ? 4 : 1); ++g) sv[g] = S[g * BU + u][bl];
    step_epilogue<KIND>(a, sv, b, unit);
  }
}

// out (cols, rows) = in (rows, cols)^T, 32x32 tiles through shared memory.
__global__ void transpose_kernel(const float* __restrict__ in, float* __restrict__ out, int rows, int cols) {
  __shared__ float tile[32][33];
  const int c0 = int(blockIdx.x) * 32, r0 = int(blockIdx.y) * 32;
  for (int i = int(threadIdx.y); i < 32; i += 8) {
    const int r = r0 + i, c = c0 + int(threadIdx.x);
    if (r < rows && c < cols) tile[i][threadIdx.x] = in[int64_t(r) * cols + c];
  }
  __syncthreads();
  for (int i = int(threadIdx.y); i < 32; i += 8) {
    const int c = c0 + i, r = r0 + int(threadIdx.x);
    if (c < cols && r < rows) out[int64_t(c) * rows + r] = tile[threadIdx.x][i];
  }
}

// out[j] = sum_i in[i, j] (rows, cols): 32 columns per block, 8 row lanes, fixed order.
__global__ void column_sum_kernel(const float* __restrict__ in, float* __restrict__ out, int64_t rows, int cols) {
  __shared__ float part[8][33];
  const int col = int(blockIdx.x) * 32 + int(threadIdx.x);
  float acc = 0.0f;
  if (col < cols)
    for (int64_t i = threadIdx.y; i < rows; i += 8) acc += in[i * cols + col];
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float s = 0.0f;
#pragma unroll
    for (int y = 0; y < 8; ++y) s += part[y][threadIdx.x];
    out[col] = s;
  }
}

int sm_count() {
  int dev = 0, n = 0;
  FL_CUDA_CHECK(cudaGetDevice(&dev));
  FL_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  return n > 0 ? n : 1;
}

// 8 batch rows per block unless 32 per block still fills every SM (then W_hh is read 4x less).
// FASTLAYERS_CUDA_RNN_BPT=2|8 forces one (read at every layer call, so the benchmark can
// compare both in one process).
int pick_bpt(int64_t unit_blocks, int64_t B) {
  const char* e = std::getenv("FASTLAYERS_CUDA_RNN_BPT");
  const int forced = e ? std::atoi(e) : 0;
  if (forced == 2 || forced == 8) return forced;
  return unit_blocks * ((B + 31) / 32) >= sm_count() ? 8 : 2;
}

// Programmatic dependent launch (sm_90+, FASTLAYERS_CUDA_RNN_PDL=1, off by default: not yet
// measured): each step's launch may begin while the previous step drains; the kernel's first
// instruction (griddepcontrol.wait) still waits for the previous grid to complete and flush,
// so the result is the same. Saves part of the ~1-2 us gap between dependent launches.
bool use_pdl() {
  const char* e = std::getenv("FASTLAYERS_CUDA_RNN_PDL");
  if (!e || std::strcmp(e, "1") != 0) return false;
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
  return major >= 9;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename Kernel>
void launch_kernel(Kernel kern, dim3 grid, const StepArgs& a, bool pdl, cudaStream_t s) {
  if (pdl) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(256);
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    if (cudaLaunchKernelEx(&cfg, kern, a) == cudaSuccess) return;
    (void)cudaGetLastError();  // not supported here (e.g. this stream): the plain launch below
  }
  kern<<<grid, 256, 0, s>>>(a);
}

template <int KIND>
void launch_step(const StepArgs& a, int bpt, bool pdl, cudaStream_t s) {
  constexpr int BU = step_units<KIND>();
  const bool vec = a.X == nullptr ||
                   (a.K % 4 == 0 && a.ldx % 4 == 0 && aligned16(a.X) && aligned16(a.W));
  const int64_t bb = 4 * bpt;
  const dim3 grid(unsigned((a.H + BU - 1) / BU), unsigned((a.B + bb - 1) / bb));
  if (bpt == 8) {
    if (vec) launch_kernel(rnn_step_kernel<KIND, 8, true>, grid, a, pdl, s);
    else launch_kernel(rnn_step_kernel<KIND, 8, false>, grid, a, pdl, s);
  } else {
    if (vec) launch_kernel(rnn_step_kernel<KIND, 2, true>, grid, a, pdl, s);
    else launch_kernel(rnn_step_kernel<KIND, 2, false>, grid, a, pdl, s);
  }
  check_launch("rnn_step_kernel");
}

void gemm_f32(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, bool ta, const float* b, int64_t ldb,
              bool tb, float* c, int64_t ldc, float beta, const float* col_bias, cudaStream_t s) {
  GemmCudaParams g;
  g.m = m; g.n = n; g.k = k;
  g.a = a; g.lda = lda; g.trans_a = ta;
  g.b = b; g.ldb = ldb; g.trans_b = tb;
  g.c = c; g.ldc = ldc;
  g.beta = beta;
  g.col_bias = col_bias;
  g.dtype = DType::f32;
  gemm(g, s);
}

void copy_or_zero(float* dst, const float* src, int64_t n, cudaStream_t s) {
  if (n == 0 || !dst) return;
  if (src) FL_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n) * sizeof(float), cudaMemcpyDeviceToDevice, s));
  else FL_CUDA_CHECK(cudaMemsetAsync(dst, 0, size_t(n) * sizeof(float), s));
}

void check_sizes(int mode, int64_t T, int64_t B, int64_t I, int64_t H, int64_t ldy, int64_t y_col, const char* what) {
  FL_CHECK(mode >= 0 && mode <= 2, what, ": bad mode ", mode);
  FL_CHECK(T >= 0 && B >= 0 && I >= 1 && H >= 1, what, ": bad sizes T=", T, " B=", B, " I=", I, " H=", H);
  FL_CHECK(y_col >= 0 && y_col + H <= ldy, what, ": output columns [", y_col, ", ", y_col + H, ") exceed ", ldy);
  const int64_t G = mode == 0 ? 4 : 1;
  FL_CHECK(G * H * std::max<int64_t>(H, I) < (int64_t(1) << 31) && B * ldy < (int64_t(1) << 31) &&
               B < 65535LL * 8,
           what, ": sizes too large for the CUDA kernels (B=", B, ", H=", H, ", I=", I, ")");
}

}  // namespace

void rnn_layer_forward(const RnnLayerCuda& p, Stream stream) {
  check_sizes(p.mode, p.T, p.B, p.I, p.H, p.ldy, p.y_col, "rnn_layer_forward");
  const auto s = static_cast<cudaStream_t>(stream);
  const bool lstm = p.mode == 0;
  const int64_t T = p.T, B = p.B, H = p.H, G = lstm ? 4 : 1, GH = G * H;
  if (B == 0) return;
  if (T == 0) {
    copy_or_zero(p.h_n, p.h0, B * H, s);
    if (lstm) copy_or_zero(p.c_n, p.c0, B * H, s);
    return;
  }
  gemm_f32(T * B, GH, p.I, p.x, p.I, false, p.w_ih, p.I, true, p.work, GH, 0.0f, p.b_ih, s);
  const int64_t unit_blocks = (H + (lstm ? 8 : 32) - 1) / (lstm ? 8 : 32);
  const int bpt = pick_bpt(unit_blocks, B);
  const bool pdl = use_pdl();
  float* c_state = p.c_n;  // inference: the running cell state lives in c_n
  for (int64_t step = 0; step < T; ++step) {
    const int64_t t = p.reverse ? T - 1 - step : step;
    const int64_t tp = p.reverse ? t + 1 : t - 1;
    StepArgs a{};
    a.mode = p.mode;
    a.B = int(B);
    a.H = int(H);
    a.K = int(H);
    a.W = p.w_hh;
    if (step == 0) {
      a.X = p.h0;
      a.ldx = int(H);
    } else {
      a.X = p.y + tp * B * p.ldy + p.y_col;
      a.ldx = int(p.ldy);
    }
    a.xg = p.work + t * B * GH;
    a.b_hh = p.b_hh;
    a.h_out = p.y + t * B * p.ldy + p.y_col;
    a.ldh = int(p.ldy);
    if (lstm) {
      if (p.cells) {
        a.c_prev = step == 0 ? p.c0 : p.cells + tp * B * H;
        a.c_out = p.cells + t * B * H;
      } else {
        a.c_prev = step == 0 ? p.c0 : c_state;
        a.c_out = c_state;
      }
      a.gates = p.gates ? p.gates + t * B * 4 * H : nullptr;
      launch_step<kFwdLstm>(a, bpt, pdl, s);
    } else {
      launch_step<kFwdRnn>(a, bpt, pdl, s);
    }
  }
  const int64_t tl = p.reverse ? 0 : T - 1;
  FL_CUDA_CHECK(cudaMemcpy2DAsync(p.h_n, size_t(H) * sizeof(float), p.y + tl * B * p.ldy + p.y_col,
                                  size_t(p.ldy) * sizeof(float), size_t(H) * sizeof(float), size_t(B),
                                  cudaMemcpyDeviceToDevice, s));
  if (lstm && p.cells)
    FL_CUDA_CHECK(cudaMemcpyAsync(p.c_n, p.cells + tl * B * H, size_t(B * H) * sizeof(float),
                                  cudaMemcpyDeviceToDevice, s));
}

void rnn_layer_backward(const RnnLayerBackwardCuda& p, Stream stream) {
  check_sizes(p.mode, p.T, p.B, p.I, p.H, p.ldy, p.y_col, "rnn_layer_backward");
  const auto s = static_cast<cudaStream_t>(stream);
  const bool lstm = p.mode == 0;
  const int64_t T = p.T, B = p.B, H = p.H, I = p.I, G = lstm ? 4 : 1, GH = G * H;
  FL_CHECK(!lstm || (p.gates && p.cells) || T == 0 || B == 0, "rnn_layer_backward: the LSTM reserve is missing");
  if (B > 0) {
    // W_hh (GH, H) -> W_hh^T (H, GH): the backward product reads rows along its k = GH.
    transpose_kernel<<<dim3(unsigned((H + 31) / 32), unsigned((GH + 31) / 32)), dim3(32, 8), 0, s>>>(
        p.w_hh, p.work_wt, int(GH), int(H));
    check_launch("transpose_kernel");
    if (lstm) copy_or_zero(p.work_dc, p.dc_n, B * H, s);
    const int bpt = pick_bpt((H + 31) / 32, B);
    const bool pdl = use_pdl();
    for (int64_t j = 0; j <= T; ++j) {
      StepArgs a{};
      a.mode = p.mode;
      a.B = int(B);
      a.H = int(H);
      a.K = int(GH);
      a.W = p.work_wt;
      if (j > 0) {
        const int64_t tprev = p.reverse ? j - 1 : T - j;  // the step handled by the previous launch
        a.X = p.work_dg + tprev * B * GH;
        a.ldx = int(GH);
      }
      a.add = j == 0 ? p.dh_n : nullptr;
      a.has_step = j < T;
      a.dc = p.work_dc;
      a.dh0 = p.dh0;
      a.dc0 = lstm ? p.dc0 : nullptr;
      if (j < T) {
        const int64_t t = p.reverse ? j : T - 1 - j;
        const int64_t tp = p.reverse ? t + 1 : t - 1;  // the step before t in the forward's order
        const bool first = j == T - 1;                 // t was the forward's first step
        a.dy = p.dy + t * B * p.ldy + p.y_col;
        a.h_t = p.y + t * B * p.ldy + p.y_col;
        a.ldy = int(p.ldy);
        a.dg = p.work_dg + t * B * GH;
        if (lstm) {
          a.g_t = p.gates + t * B * 4 * H;
          a.c_t = p.cells + t * B * H;
          a.cp_t = first ? p.c0 : p.cells + tp * B * H;
        }
      }
      launch_step<kBwd>(a, bpt, pdl, s);
    }
  }
  // Weight gradients over all steps; each GEMM writes its whole output (k = 0 writes zeros).
  const int64_t rows = T * B;
  gemm_f32(GH, I, rows, p.work_dg, GH, true, p.x, I, false, p.dw_ih, I, 0.0f, nullptr, s);
  const int64_t kprev = std::max<int64_t>(T - 1, 0) * B;
  const float* dg_rest = p.reverse ? p.work_dg : p.work_dg + B * GH;            // steps with a previous h in y
  const float* h_rest = p.reverse ? p.y + B * p.ldy + p.y_col : p.y + p.y_col;  // ... and that h
  gemm_f32(GH, H, kprev, dg_rest, GH, true, h_rest, p.ldy, false, p.dw_hh, H, 0.0f, nullptr, s);
  if (p.h0 && T > 0 && B > 0) {
    const int64_t tf = p.reverse ? T - 1 : 0;
    gemm_f32(GH, H, B, p.work_dg + tf * B * GH, GH, true, p.h0, H, false, p.dw_hh, H, 1.0f, nullptr, s);
  }
  if (p.db) {
    column_sum_kernel<<<unsigned((GH + 31) / 32), dim3(32, 8), 0, s>>>(p.work_dg, p.db, rows, int(GH));
    check_launch("column_sum_kernel");
  }
  if (rows > 0)
    gemm_f32(rows, I, GH, p.work_dg, GH, false, p.w_ih, I, false, p.dx, I, p.accumulate_dx ? 1.0f : 0.0f, nullptr,
             s);
}

}  // namespace cuda
}  // namespace fl
