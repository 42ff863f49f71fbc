// Drivers of the recurrent layers: weight packing, the input-projection and weight-gradient
// GEMMs (run_gemm over all T*B rows at once), and the time loop run by one OpenMP team with
// a step-completion counter (run_steps). The per-step work is in the ISA kernels
// (rnn_kernels_impl.h).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "core/parallel.h"
#include "gemm/gemm.h"
#include "rnn/rnn.h"

#if defined(FASTLAYERS_X86)
#include <immintrin.h>
#endif

namespace fl {
namespace {

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float, FreeDeleter>;

Buffer alloc_floats(index_t n) {
  const index_t bytes = std::max<index_t>(64, (n * static_cast<index_t>(sizeof(float)) + 63) / 64 * 64);
  float* p = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(bytes)));
  if (!p) throw std::bad_alloc();
  return Buffer(p);
}

index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

// Grow-only scratch of the calling thread, one per purpose. The input projection of the
// issue's shape is 26 MB: allocating it per call costs ~6400 page faults (a few ms, ~5% of
// the call) because large blocks go back to the OS on free.
enum Slot : int { kSlotProjection, kSlotPanels, kSlotState, kSlotGrad, kSlotCount };

float* scratch(Slot slot, index_t n) {
  thread_local Buffer bufs[kSlotCount];
  thread_local index_t sizes[kSlotCount] = {};
  if (n > sizes[slot]) {
    bufs[slot].reset();
    sizes[slot] = 0;
    bufs[slot] = alloc_floats(n);
    sizes[slot] = n;
  }
  return bufs[slot].get();
}

// Threads for a time loop doing `fma_per_step` multiply-adds per step over `items` tiles.
// Synchronising a step costs ~1-2 us (~100k FMAs at 2 x 8 lanes x 2 pipes x 3 GHz); below
// ~64k FMAs per thread per step the team costs more than it brings.
int loop_threads(index_t fma_per_step, index_t items) {
  const int nt = threads_for(fma_per_step, index_t{1} << 16);
  return static_cast<int>(std::max<index_t>(1, std::min<index_t>(nt, items)));
}

// Tiles x row-blocks work items; f(tile_begin, tile_end, r0, r1) runs a range of them.
struct Partition {
  index_t tiles, row_groups, items;
  Partition(index_t tiles_, index_t B, int nt) : tiles(tiles_) {
    row_groups = std::max<index_t>(1, std::min<index_t>(B, ceil_div(2 * nt, std::max<index_t>(1, tiles))));
    if (tiles >= nt) row_groups = 1;
    items = tiles * row_groups;
  }
  template <class F>
  void run(index_t begin, index_t end, index_t B, F&& f) const {
    for (index_t it = begin; it < end;) {
      const index_t tile = it / row_groups, g = it % row_groups;
      if (row_groups == 1) {  // contiguous tiles in one call
        f(tile, end, index_t{0}, B);
        return;
      }
      f(tile, tile + 1, B * g / row_groups, B * (g + 1) / row_groups);
      ++it;
    }
  }
};

// run_gemm with a higher bar for a second thread than its default (1M FMAs per thread):
// 2M. Measured on the batch-1 shape (T=50, I=128, H=256), quiet machine: 1 thread for the
// GEMMs and the packing 0.90 ms per call, 2 threads 0.65 ms; with the bar at 8M instead,
// the loaded machine fared better (waking a descheduled OpenMP worker costs milliseconds
// there), but the quiet machine is what the numbers are for.
void gemm(GemmParams g) {
  g.num_threads = threads_for(g.m * g.n * g.k, index_t{1} << 21);
  run_gemm(g);
}

inline void cpu_relax() {
#if defined(FASTLAYERS_X86)
  _mm_pause();
#endif
}

// The time loop: `steps` steps, each a set of work items in chunks, step s + 1 starting only
// when every chunk of step s is done. Each thread first takes its own chunks (the same ones
// at every step, so its panels and its part of the cell state stay in its cache), then any
// chunk still unclaimed. A chunk is claimed by moving its counter from s - 1 to s, so a
// thread that the OS has descheduled (2 cores shared with other processes) holds up nobody:
// the others take its chunks instead of waiting at a barrier for it (a barrier made the
// batch-1 case 20x slower on this loaded machine). work(s, item_begin, item_end).
template <class F>
void run_steps(index_t steps, index_t items, int nt, F&& work) {
  if (nt <= 1) {
    for (index_t s = 0; s < steps; ++s) work(s, index_t{0}, items);
    return;
  }
  // ~4 chunks per thread: enough to rebalance, few enough that claiming costs nothing.
  const index_t chunk = std::max<index_t>(1, items / (4 * nt));
  const index_t nchunks = ceil_div(items, chunk);
  struct alignas(64) Claim {
    std::atomic<index_t> step;
  };
  std::unique_ptr<Claim[]> claims(new Claim[nchunks]);
  for (index_t c = 0; c < nchunks; ++c) claims[c].step.store(-1, std::memory_order_relaxed);
  alignas(64) std::atomic<index_t> done{0};

#pragma omp parallel num_threads(nt)
  {
    const index_t tid = omp_get_thread_num(), team = omp_get_num_threads();
    const index_t own = nchunks * tid / team;
    for (index_t s = 0; s < steps; ++s) {
      for (index_t i = 0; i < nchunks; ++i) {
        const index_t c = (own + i) % nchunks;
        index_t expect = s - 1;
        if (claims[c].step.load(std::memory_order_relaxed) != expect) continue;
        if (!claims[c].step.compare_exchange_strong(expect, s, std::memory_order_acq_rel)) continue;
        work(s, c * chunk, std::min(items, (c + 1) * chunk));
        done.fetch_add(1, std::memory_order_acq_rel);
      }
      // Wait for the step: spin briefly (a quiet machine finishes in microseconds), then yield
      // the core, which may be the one the missing thread needs.
      const index_t target = (s + 1) * nchunks;
      for (int spin = 0; done.load(std::memory_order_acquire) < target; ++spin) {
        if (spin < 4096) {
          cpu_relax();
        } else {
          std::this_thread::yield();
        }
      }
    }
  }
}

// Pack w_hh for the step kernels (layouts in rnn.h). backward=false: forward panels.
const float* pack_recurrent(RnnMode mode, const float* w_hh, index_t H, int W, bool backward, index_t* tiles_out) {
  const bool lstm = mode == RnnMode::lstm;
  const index_t GH = rnn_gate_count(mode) * H;
  const bool gate_tiles = lstm && !backward;
  const index_t tiles = gate_tiles ? ceil_div(H, W) : ceil_div(H, 4 * W);
  const index_t K = backward ? GH : H;
  const index_t panel = K * 4 * W;
  float* dst = scratch(kSlotPanels, tiles * panel);
  // >= 64k floats per thread (see gemm() above for the measurement).
  parallel_for(tiles, std::max<index_t>(1, (index_t{1} << 16) / std::max<index_t>(1, panel)),
               [&](index_t tb, index_t te) {
    for (index_t j = tb; j < te; ++j) {
      float* pj = dst + j * panel;
      for (int v = 0; v < 4; ++v) {
        for (int l = 0; l < W; ++l) {
          const index_t u = gate_tiles ? j * W + l : j * 4 * W + v * W + l;
          float* out = pj + v * W + l;
          if (u >= H) {
            for (index_t k = 0; k < K; ++k) out[k * 4 * W] = 0.0f;
          } else if (backward) {  // B(k, u) = w_hh[k, u]
            for (index_t k = 0; k < K; ++k) out[k * 4 * W] = w_hh[k * H + u];
          } else {  // B(k, u) = w_hh[row, k], row = gate v's unit u (LSTM) or unit u (RNN)
            const float* src = w_hh + (gate_tiles ? v * H + u : u) * H;
            for (index_t k = 0; k < K; ++k) out[k * 4 * W] = src[k];
          }
        }
      }
    }
  });
  *tiles_out = tiles;
  return dst;
}

void copy_rows(float* dst, index_t ldd, const float* src, index_t lds, index_t rows, index_t cols) {
  for (index_t r = 0; r < rows; ++r) {
    if (src) {
      std::memcpy(dst + r * ldd, src + r * lds, sizeof(float) * cols);
    } else {
      std::fill(dst + r * ldd, dst + r * ldd + cols, 0.0f);
    }
  }
}

}  // namespace

void run_rnn_layer_forward(const RnnLayerForward& p) {
  const index_t T = p.T, B = p.B, H = p.H, GH = rnn_gate_count(p.mode) * H;
  const bool lstm = p.mode == RnnMode::lstm;
  FL_CHECK(T >= 0 && B >= 0 && H >= 1 && p.I >= 0, "rnn: bad sizes T=", T, " B=", B, " H=", H, " I=", p.I);
  if (B == 0) return;
  if (T == 0) {
    copy_rows(p.h_n, H, p.h0, H, B, H);
    if (lstm) copy_rows(p.c_n, H, p.c0, H, B, H);
    return;
  }
  const RnnKernels ker = rnn_kernels_for(active_isa());

  // Input projection of all steps in one GEMM, with b_ih + b_hh as the column bias. In
  // training the projection is written straight into the gates reserve, which each step
  // then overwrites with the activated gates.
  float* xp = lstm ? p.gates : nullptr;
  if (!xp) xp = scratch(kSlotProjection, T * B * GH);
  Buffer bias_own;
  const float* bias = nullptr;
  if (p.b_ih && p.b_hh) {
    bias_own = alloc_floats(GH);
    for (index_t j = 0; j < GH; ++j) bias_own.get()[j] = p.b_ih[j] + p.b_hh[j];
    bias = bias_own.get();
  } else {
    bias = p.b_ih ? p.b_ih : p.b_hh;
  }
  GemmParams g;
  g.m = T * B;
  g.n = GH;
  g.k = p.I;
  g.a = p.x;
  g.a_rs = p.ldx;
  g.a_cs = 1;
  g.b = p.w_ih;  // B(i, j) = w_ih[j, i]
  g.b_rs = 1;
  g.b_cs = p.I;
  g.c = xp;
  g.ldc = GH;
  g.col_bias = bias;
  gemm(g);

  index_t tiles = 0;
  const float* panels = pack_recurrent(p.mode, p.w_hh, H, ker.lanes, false, &tiles);

  // Cell state: in inference one (B, H) buffer updated in place; in training the reserve.
  float* c_state = nullptr;
  if (lstm && !p.cs) {
    c_state = scratch(kSlotState, B * H);
    copy_rows(c_state, H, p.c0, H, B, H);
  }
  const int nt = loop_threads(B * GH * H, std::max<index_t>(tiles, 1) * B);
  const Partition part(tiles, B, nt);

  auto step_args = [&](index_t s) {
    const index_t t = p.reverse ? T - 1 - s : s;
    const index_t tp = p.reverse ? t + 1 : t - 1;  // the step before, in processing order
    StepForward a{};
    a.mode = p.mode;
    a.B = B;
    a.H = H;
    a.panels = panels;
    if (s == 0) {
      a.hprev = p.h0;
      a.ld_hprev = H;
    } else {
      a.hprev = p.y + tp * B * p.ldy;
      a.ld_hprev = p.ldy;
    }
    a.xp = xp + t * B * GH;
    a.gates_out = lstm && p.gates ? p.gates + t * B * GH : nullptr;
    if (lstm) {
      if (p.cs) {
        a.cprev = s == 0 ? p.c0 : p.cs + tp * B * H;
        a.c_out = p.cs + t * B * H;
      } else {
        a.cprev = c_state;
        a.c_out = c_state;
      }
    }
    a.h_out = p.y + t * B * p.ldy;
    a.ld_h = p.ldy;
    return a;
  };

  run_steps(T, part.items, nt, [&](index_t s, index_t begin, index_t end) {
    const StepForward a = step_args(s);
    part.run(begin, end, B, [&](index_t tb, index_t te, index_t r0, index_t r1) {
      ker.forward_tiles(a, tb, te, r0, r1);
    });
  });

  const index_t t_last = p.reverse ? 0 : T - 1;
  copy_rows(p.h_n, H, p.y + t_last * B * p.ldy, p.ldy, B, H);
  if (lstm) copy_rows(p.c_n, H, p.cs ? p.cs + t_last * B * H : c_state, H, B, H);
}

void run_rnn_layer_backward(const RnnLayerBackward& p) {
  const index_t T = p.T, B = p.B, H = p.H, I = p.I, GH = rnn_gate_count(p.mode) * H;
  const bool lstm = p.mode == RnnMode::lstm;
  FL_CHECK(T >= 0 && B >= 0 && H >= 1 && I >= 0, "rnn_backward: bad sizes T=", T, " B=", B, " H=", H, " I=", I);
  if (T == 0 || B == 0) {
    std::fill(p.dw_ih, p.dw_ih + GH * I, 0.0f);
    std::fill(p.dw_hh, p.dw_hh + GH * H, 0.0f);
    if (p.db) std::fill(p.db, p.db + GH, 0.0f);
    copy_rows(p.dh0, H, p.dh_n, H, B, H);
    if (lstm) copy_rows(p.dc0, H, p.dc_n, H, B, H);
    if (!p.accumulate_dx) copy_rows(p.dx, p.lddx, nullptr, 0, T * B, I);
    return;
  }
  const RnnKernels ker = rnn_kernels_for(active_isa());
  index_t tiles = 0;
  const float* panels = pack_recurrent(p.mode, p.w_hh, H, ker.lanes, true, &tiles);
  float* dg = scratch(kSlotGrad, T * B * GH);
  float* dc = nullptr;
  if (lstm) {
    dc = scratch(kSlotState, B * H);
    copy_rows(dc, H, p.dc_n, H, B, H);
  }

  const int nt = loop_threads(B * GH * H, tiles * B);
  const Partition part(tiles, B, nt);
  auto step_args = [&](index_t s) {
    // s counts backward steps; t is the forward time of this one.
    const index_t t = p.reverse ? s : T - 1 - s;
    const index_t t_next = p.reverse ? t - 1 : t + 1;    // processed just before (in this loop)
    const index_t t_before = p.reverse ? t + 1 : t - 1;  // forward step before t
    StepBackward a{};
    a.mode = p.mode;
    a.B = B;
    a.H = H;
    a.panels = panels;
    a.dg_next = s == 0 ? nullptr : dg + t_next * B * GH;
    a.dh_init = p.dh_n;
    a.dy = p.dy + t * B * p.lddy;
    a.ld_dy = p.lddy;
    if (lstm) {
      a.gates = p.gates + t * B * GH;
      a.c = p.cs + t * B * H;
      a.cprev = s == T - 1 ? p.c0 : p.cs + t_before * B * H;
      a.dc = dc;
    } else {
      a.h = p.y + t * B * p.ldy;
      a.ld_h = p.ldy;
    }
    a.dg_out = dg + t * B * GH;
    return a;
  };

  // Steps 0..T-1, then step T: the gradient of h0, one more recurrent product with no
  // pointwise work.
  StepBackward last{};
  last.mode = p.mode;
  last.B = B;
  last.H = H;
  last.panels = panels;
  last.dg_next = dg + (p.reverse ? T - 1 : 0) * B * GH;
  last.dh_out = p.dh0;
  run_steps(T + 1, part.items, nt, [&](index_t s, index_t begin, index_t end) {
    const StepBackward a = s < T ? step_args(s) : last;
    part.run(begin, end, B, [&](index_t tb, index_t te, index_t r0, index_t r1) {
      ker.backward_tiles(a, tb, te, r0, r1);
    });
  });
  if (lstm) copy_rows(p.dc0, H, dc, H, B, H);

  // Weight gradients over all T*B rows at once.
  GemmParams g;  // dw_ih = dG^T x
  g.m = GH;
  g.n = I;
  g.k = T * B;
  g.a = dg;
  g.a_rs = 1;
  g.a_cs = GH;
  g.b = p.x;
  g.b_rs = p.ldx;
  g.b_cs = 1;
  g.c = p.dw_ih;
  g.ldc = I;
  gemm(g);

  // dw_hh = sum_t dG_t^T h_{t-1}: the steps with a predecessor in one GEMM (dG rows of steps
  // 1.. against y rows of steps ..T-2, shifted by one step), then the first step against h0.
  const index_t t_first = p.reverse ? T - 1 : 0;
  GemmParams h;
  h.m = GH;
  h.n = H;
  h.k = (T - 1) * B;
  h.a = dg + (p.reverse ? 0 : B * GH);
  h.a_rs = 1;
  h.a_cs = GH;
  h.b = p.y + (p.reverse ? B * p.ldy : 0);
  h.b_rs = p.ldy;
  h.b_cs = 1;
  h.c = p.dw_hh;
  h.ldc = H;
  gemm(h);  // k == 0 (T == 1) writes zeros
  if (p.h0) {
    GemmParams h0 = h;
    h0.k = B;
    h0.a = dg + t_first * B * GH;
    h0.b = p.h0;
    h0.b_rs = H;
    h0.beta = 1.0f;
    gemm(h0);
  }

  if (p.db) {
    float* db = p.db;
    parallel_for(GH, std::max<index_t>(256, (index_t{1} << 18) / (T * B)), [&](index_t c0, index_t c1) {
      std::fill(db + c0, db + c1, 0.0f);
      for (index_t r = 0; r < T * B; ++r) {
        const float* row = dg + r * GH;
        for (index_t j = c0; j < c1; ++j) db[j] += row[j];
      }
    });
  }

  GemmParams d;  // dx (+)= dG w_ih
  d.m = T * B;
  d.n = I;
  d.k = GH;
  d.a = dg;
  d.a_rs = GH;
  d.a_cs = 1;
  d.b = p.w_ih;
  d.b_rs = I;
  d.b_cs = 1;
  d.c = p.dx;
  d.ldc = p.lddx;
  d.beta = p.accumulate_dx ? 1.0f : 0.0f;
  gemm(d);
}

}  // namespace fl
