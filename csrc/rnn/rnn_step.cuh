// The recurrent step kernel's per-thread pieces (rnn.cu's rnn_step_kernel): which weight row a
// block row reads, and the fused epilogues (LSTM / RNN forward cell update, the backward
// through time's gate gradients). __host__ __device__ so that bench/gpu/emulate_rnn_step.cu
// runs them on the CPU with the kernel's block/thread mapping.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FL_RNN_HD __host__ __device__ __forceinline__
#else
#define FL_RNN_HD inline
#endif

namespace fl {
namespace cuda {

enum Kind { kFwdLstm = 0, kFwdRnn = 1, kBwd = 2 };

struct StepArgs {
  int mode;  // 0 lstm, 1 tanh, 2 relu
  int B, H, K;
  const float* X;  // (B, K) rows with stride ldx; null: the product is zero (h0 absent, first backward launch)
  int ldx;
  const float* W;  // row-major rows of length K: W_hh (forward) or W_hh^T (backward)
  // forward epilogue
  const float* xg;      // this step's input projections (B, G*H)
  const float* b_hh;    // (G*H) or null
  const float* c_prev;  // (B, H) or null (zeros)
  float* c_out;         // (B, H) (may equal c_prev: each element is read, then written, by one thread)
  float* h_out;         // rows of stride ldh
  int ldh;
  float* gates;  // (B, 4H) or null
  // backward epilogue
  const float* add;  // (B, H) added to the product (dh_n on the first launch) or null
  bool has_step;     // false on the last launch: write dh0 / dc0 instead
  const float* dy;   // this step's output gradient rows (stride ldy); h_t (RNN) has the same layout
  const float* h_t;
  int ldy;
  const float* g_t;   // LSTM reserve at t (B, 4H)
  const float* c_t;   // (B, H)
  const float* cp_t;  // cell state before t (B, H) or null (zeros)
  float* dg;          // dgates at t (B, G*H)
  float* dc;          // running dc (B, H), in/out
  float* dh0;
  float* dc0;
};

// Hidden units per block: the LSTM's 32 block rows are the 4 gates of 8 units (one thread's
// epilogue needs all four), the RNN's and the backward's are 32 units.
template <int KIND>
#if defined(__CUDACC__)
__host__ __device__
#endif
constexpr int step_units() {
  return KIND == kFwdLstm ? 8 : 32;
}

// The weight row that block row r (0..31) of the block starting at unit u0 reads; -1 past H.
template <int KIND>
FL_RNN_HD int step_w_row(int u0, int r, int H) {
  constexpr int BU = step_units<KIND>();
  const int unit = u0 + (KIND == kFwdLstm ? r % BU : r);
  const int gate = KIND == kFwdLstm ? r / BU : 0;
  return unit < H ? gate * H + unit : -1;
}

#if defined(__CUDA_ARCH__)
FL_RNN_HD float step_sigmoid(float x) { return sigmoid_d(x); }
FL_RNN_HD float step_tanh(float x) { return tanh_d(x); }
FL_RNN_HD float step_relu(float x) { return relu_d(x); }
#else
inline float step_sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float step_tanh(float x) { return std::tanh(x); }
inline float step_relu(float x) { return x > 0.0f ? x : (x == x ? 0.0f : x); }
#endif

// Epilogue for batch row b and hidden unit `unit` (both in range): sv[g] = the recurrent
// product's value for gate g (sv[0] only, for the RNN and the backward).
template <int KIND>
FL_RNN_HD void step_epilogue(const StepArgs& a, const float (&sv)[4], int b, int unit) {
  const int H = a.H;
  const int64_t bh = int64_t(b) * H + unit;
  if (KIND == kFwdLstm) {
    const float* xg = a.xg + int64_t(b) * 4 * H + unit;
    float pre[4];
    for (int g = 0; g < 4; ++g) pre[g] = sv[g] + xg[g * H] + (a.b_hh ? a.b_hh[g * H + unit] : 0.0f);
    const float ig = step_sigmoid(pre[0]), fg = step_sigmoid(pre[1]), gg = step_tanh(pre[2]),
                og = step_sigmoid(pre[3]);
    const float cp = a.c_prev ? a.c_prev[bh] : 0.0f;
    const float c = fmaf(fg, cp, ig * gg);
    a.c_out[bh] = c;
    a.h_out[int64_t(b) * a.ldh + unit] = og * step_tanh(c);
    if (a.gates) {
      float* gt = a.gates + int64_t(b) * 4 * H + unit;
      gt[0] = ig;
      gt[H] = fg;
      gt[2 * H] = gg;
      gt[3 * H] = og;
    }
  } else if (KIND == kFwdRnn) {
    const float pre = sv[0] + a.xg[bh] + (a.b_hh ? a.b_hh[unit] : 0.0f);
    a.h_out[int64_t(b) * a.ldh + unit] = a.mode == 1 ? step_tanh(pre) : step_relu(pre);
  } else {
    const float s = sv[0] + (a.add ? a.add[bh] : 0.0f);
    if (!a.has_step) {
      a.dh0[bh] = s;
      if (a.dc0) a.dc0[bh] = a.dc[bh];
      return;
    }
    const float dh = s + a.dy[int64_t(b) * a.ldy + unit];
    if (a.mode == 0) {
      const float* gt = a.g_t + int64_t(b) * 4 * H + unit;
      const float ig = gt[0], fg = gt[H], gg = gt[2 * H], og = gt[3 * H];
      const float c = a.c_t[bh];
      const float cp = a.cp_t ? a.cp_t[bh] : 0.0f;
      const float tc = step_tanh(c);
      const float dcv = a.dc[bh] + dh * og * (1.0f - tc * tc);
      float* d = a.dg + int64_t(b) * 4 * H + unit;
      d[0] = dcv * gg * ig * (1.0f - ig);
      d[H] = dcv * cp * fg * (1.0f - fg);
      d[2 * H] = dcv * ig * (1.0f - gg * gg);
      d[3 * H] = dh * tc * og * (1.0f - og);
      a.dc[bh] = dcv * fg;
    } else {
      const float h = a.h_t[int64_t(b) * a.ldy + unit];
      const float dd = a.mode == 1 ? 1.0f - h * h : (h > 0.0f ? 1.0f : 0.0f);
      a.dg[bh] = dh * dd;
    }
  }
}

}  // namespace cuda
}  // namespace fl
