// Recurrent layers on the CPU: LSTM and Elman RNN (tanh / relu), one layer and one direction
// per call, forward over the whole sequence and backward through time. Python (functional/
// _rnn.py) stacks layers and directions; cells are sequences of length 1.
//
// Shapes (time-major rows r = t*B + b): x (T*B, I), y (T*B, H) inside a wider layer output
// (row stride ldy = dirs*H), gates (T*B, G*H) with G = 4 (i, f, g, o) for the LSTM and 1 for
// the RNN, states (B, H). Weights in PyTorch's layout: w_ih (G*H, I), w_hh (G*H, H).
//
// Forward: one GEMM for the input projection of all T steps (both biases folded in as the
// column bias), then per step the recurrent product h_{t-1} @ w_hh^T on weights packed once
// into 4-vector panels, with the gate nonlinearities and the cell update applied to each
// tile while it is still in registers/L1 (no separate pass over the gates). One OpenMP team
// lives for the whole sequence; each thread owns a fixed set of hidden-unit tiles (so its
// panels stay in its own L2), takes over tiles of a thread the OS has descheduled, and
// waits between steps on a completion counter, not a fork/join.
#pragma once

#include "core/common.h"
#include "core/cpu_features.h"

namespace fl {

enum class RnnMode : int { lstm = 0, rnn_tanh = 1, rnn_relu = 2 };

inline index_t rnn_gate_count(RnnMode m) { return m == RnnMode::lstm ? 4 : 1; }

struct RnnLayerForward {
  RnnMode mode = RnnMode::lstm;
  index_t T = 0, B = 0, I = 0, H = 0;
  const float* x = nullptr;  // (T*B, I), row stride ldx
  index_t ldx = 0;
  const float* w_ih = nullptr;  // (G*H, I)
  const float* w_hh = nullptr;  // (G*H, H)
  const float* b_ih = nullptr;  // (G*H) or null
  const float* b_hh = nullptr;  // (G*H) or null
  const float* h0 = nullptr;    // (B, H) or null (zeros)
  const float* c0 = nullptr;    // (B, H) or null (zeros); LSTM only
  float* y = nullptr;           // (T*B, H), row stride ldy
  index_t ldy = 0;
  float* h_n = nullptr;  // (B, H)
  float* c_n = nullptr;  // (B, H), LSTM only
  // Training reserve (null in inference): LSTM activated gates (T*B, 4H) and cell states
  // (T*B, H). The RNN needs none (its backward uses y).
  float* gates = nullptr;
  float* cs = nullptr;
  bool reverse = false;
};

struct RnnLayerBackward {
  RnnMode mode = RnnMode::lstm;
  index_t T = 0, B = 0, I = 0, H = 0;
  const float* x = nullptr;  // forward input (T*B, I), row stride ldx
  index_t ldx = 0;
  const float* w_ih = nullptr;
  const float* w_hh = nullptr;
  const float* h0 = nullptr;  // or null (zeros)
  const float* c0 = nullptr;
  const float* y = nullptr;  // forward output (T*B, H), row stride ldy
  index_t ldy = 0;
  const float* gates = nullptr;  // LSTM reserve
  const float* cs = nullptr;
  const float* dy = nullptr;  // gradient of y, row stride lddy
  index_t lddy = 0;
  const float* dh_n = nullptr;  // (B, H) or null
  const float* dc_n = nullptr;
  float* dx = nullptr;  // (T*B, I), row stride lddx; written, or added to when accumulate_dx
  index_t lddx = 0;
  bool accumulate_dx = false;
  float* dw_ih = nullptr;  // (G*H, I), written
  float* dw_hh = nullptr;  // (G*H, H), written
  float* db = nullptr;     // (G*H) the gradient of b_ih and of b_hh alike, or null
  float* dh0 = nullptr;    // (B, H), written
  float* dc0 = nullptr;    // (B, H), LSTM only
  bool reverse = false;
};

void run_rnn_layer_forward(const RnnLayerForward& p);
void run_rnn_layer_backward(const RnnLayerBackward& p);

// ---- the ISA-specific step kernels (rnn_kernels_impl.h, instantiated per ISA) ----

// Recurrent weights packed for the step kernels: tile j holds K rows of 4 vectors of W lanes
// (4W floats per k, 64-byte aligned), zero where a lane is past the hidden size.
//   forward LSTM: tile j = units [jW, jW+W), vector v = gate v;      K = H
//   forward RNN:  tile j = units [4jW, 4jW+4W), vector v = units +vW; K = H
//   backward:     tile j = units [4jW, 4jW+4W) of dh_{t-1};          K = G*H
struct StepForward {
  RnnMode mode;
  index_t B, H;
  const float* panels;       // packed w_hh
  const float* hprev;        // (B, H) row stride ld_hprev, or null (zero state: no GEMM)
  index_t ld_hprev;
  const float* xp;           // (B, G*H) input projection + biases of this step
  float* gates_out;          // LSTM training: activated gates (B, 4H), may alias xp; or null
  const float* cprev;        // (B, H) or null (zeros)
  float* c_out;              // (B, H); may alias cprev
  float* h_out;              // (B, H) row stride ld_h
  index_t ld_h;
};

struct StepBackward {
  RnnMode mode;
  index_t B, H;
  const float* panels;     // packed w_hh (backward layout)
  const float* dg_next;    // (B, G*H) pre-activation gradients of the step processed before, or null
  const float* dh_init;    // (B, H) used when dg_next is null (grad of h_n), or null (zeros)
  const float* dy;         // (B, H) row stride ld_dy; null: final pass, store dh into dh_out
  index_t ld_dy;
  const float* gates;      // LSTM: (B, 4H) activated gates of this step
  const float* c;          // LSTM: (B, H) cell state of this step
  const float* cprev;      // LSTM: (B, H) previous cell state or null (zeros)
  float* dc;               // LSTM: (B, H) in: grad of c_t from later steps; out: grad of c_{t-1}
  const float* h;          // RNN: (B, H) row stride ld_h, this step's output
  index_t ld_h;
  float* dg_out;           // (B, G*H)
  float* dh_out;           // final pass: (B, H)
};

struct RnnKernels {
  int lanes;  // W
  void (*forward_tiles)(const StepForward& s, index_t tile_begin, index_t tile_end, index_t row_begin,
                        index_t row_end);
  void (*backward_tiles)(const StepBackward& s, index_t tile_begin, index_t tile_end, index_t row_begin,
                         index_t row_end);
};

RnnKernels rnn_kernels_generic();
RnnKernels rnn_kernels_avx2();    // x86 builds only
RnnKernels rnn_kernels_avx512();  // x86 builds only
RnnKernels rnn_kernels_for(Isa isa);

}  // namespace fl
