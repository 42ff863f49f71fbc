// CUDA recurrent layers (host-only declarations; see core/cuda_api.h): one layer, one
// direction of an LSTM or Elman RNN over a whole (T, B, I) sequence, forward and backward
// through time, PyTorch's gate layout (i, f, g, o). python/fastlayers/_cuda_conv_rnn.py runs
// the layers and directions and allocates every buffer (outputs, reserve, workspaces).
#pragma once

#include "core/cuda_api.h"

namespace fl {
namespace cuda {

// mode: 0 LSTM (G = 4 gates), 1 RNN tanh, 2 RNN relu (G = 1).
struct RnnLayerCuda {
  int mode = 0;
  index_t T = 0, B = 0, I = 0, H = 0;
  const float* x = nullptr;     // (T*B, I) contiguous
  const float* w_ih = nullptr;  // (G*H, I)
  const float* w_hh = nullptr;  // (G*H, H)
  const float* b_ih = nullptr;  // (G*H) or null
  const float* b_hh = nullptr;  // (G*H) or null
  const float* h0 = nullptr;    // (B, H) or null (zeros)
  const float* c0 = nullptr;    // (B, H) or null (zeros); LSTM
  float* y = nullptr;           // (T, B, ldy): this direction's h in columns [y_col, y_col + H)
  index_t ldy = 0, y_col = 0;
  float* h_n = nullptr;         // (B, H)
  float* c_n = nullptr;         // (B, H); LSTM
  float* gates = nullptr;       // LSTM training reserve: activated gates (T*B, 4H), or null
  float* cells = nullptr;       // LSTM training reserve: cell states (T*B, H), or null
  float* work = nullptr;        // workspace (T*B, G*H): the input projections of all steps
  bool reverse = false;
};
void rnn_layer_forward(const RnnLayerCuda& p, Stream stream);

struct RnnLayerBackwardCuda {
  int mode = 0;
  index_t T = 0, B = 0, I = 0, H = 0;
  const float* x = nullptr;     // forward input (T*B, I)
  const float* w_ih = nullptr;
  const float* w_hh = nullptr;
  const float* h0 = nullptr;    // or null
  const float* c0 = nullptr;    // or null
  const float* y = nullptr;     // forward output (T, B, ldy), columns [y_col, y_col + H)
  index_t ldy = 0, y_col = 0;
  const float* gates = nullptr;  // LSTM reserve (T*B, 4H)
  const float* cells = nullptr;  // LSTM reserve (T*B, H)
  const float* dy = nullptr;     // gradient of y, same layout as y
  const float* dh_n = nullptr;   // (B, H) or null
  const float* dc_n = nullptr;   // (B, H) or null
  float* dx = nullptr;           // (T*B, I); accumulated into when accumulate_dx
  bool accumulate_dx = false;
  float* dw_ih = nullptr;        // (G*H, I)
  float* dw_hh = nullptr;        // (G*H, H)
  float* db = nullptr;           // (G*H) or null: the gradient of b_ih and of b_hh (equal)
  float* dh0 = nullptr;          // (B, H)
  float* dc0 = nullptr;          // (B, H) or null; LSTM
  // workspaces: dgates (T*B, G*H), w_hh transposed (H, G*H), the running dc (B, H) (LSTM)
  float* work_dg = nullptr;
  float* work_wt = nullptr;
  float* work_dc = nullptr;
  bool reverse = false;
};
void rnn_layer_backward(const RnnLayerBackwardCuda& p, Stream stream);

}  // namespace cuda
}  // namespace fl
