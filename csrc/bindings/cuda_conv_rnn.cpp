// Bindings of the CUDA convolution and recurrent kernels (conv/conv_cuda.h, rnn/rnn_cuda.h).
// Host-only C++, as cuda_ops.cpp: device pointers arrive as integers (CuPy's arr.data.ptr, 0
// for None), the stream as CuPy's current stream pointer. python/fastlayers/_cuda_conv_rnn.py
// has validated every shape and allocated every output and workspace; the launchers re-check
// sizes (ValueError) and name any failing CUDA call (RuntimeError).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <vector>

#include "bindings/bind_common.h"
#if defined(FASTLAYERS_WITH_CUDA)
#include "bindings/cuda_bind_common.h"
#include "conv/conv_cuda.h"
#include "rnn/rnn_cuda.h"
#endif

namespace fl {
namespace bind {

#if defined(FASTLAYERS_WITH_CUDA)
namespace {

// dims: [n, c, h, w, k, oh, ow, r, s, sh, sw, ph, pw, dh, dw, groups] (the convolution's
// geometry; conv_transpose2d passes the geometry of the convolution it is the adjoint of)
cuda::Conv2d conv_dims(const std::vector<int64_t>& d) {
  FL_CHECK(d.size() == 16, "conv: internal error, expected 16 dims, got ", d.size());
  for (int64_t v : d) FL_CHECK(v >= 0 && v <= 2147483647LL, "conv: dimension ", v, " out of range");
  cuda::Conv2d g;
  g.n = d[0]; g.c = d[1]; g.h = d[2]; g.w = d[3]; g.k = d[4]; g.oh = d[5]; g.ow = d[6];
  g.r = int(d[7]); g.s = int(d[8]); g.sh = int(d[9]); g.sw = int(d[10]); g.ph = int(d[11]); g.pw = int(d[12]);
  g.dh = int(d[13]); g.dw = int(d[14]); g.groups = int(d[15]);
  return g;
}

}  // namespace
#endif

void bind_cuda_conv_rnn(py::module_& m) {
#if defined(FASTLAYERS_WITH_CUDA)
  m.def(
      "cuda_conv2d_forward",
      [](uptr x, uptr w, uptr bias, uptr y, const std::vector<int64_t>& dims, uptr s) {
        const cuda::Conv2d g = conv_dims(dims);
        py::gil_scoped_release nogil;
        cuda::conv2d_forward(dp<const float>(x), dp<const float>(w), dp<const float>(bias), dp(y), g, st(s));
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("y"), py::arg("dims"), py::arg("stream"));
  m.def(
      "cuda_conv2d_backward_data",
      [](uptr dy, uptr w, uptr bias, uptr dx, const std::vector<int64_t>& dims, uptr s) {
        const cuda::Conv2d g = conv_dims(dims);
        py::gil_scoped_release nogil;
        cuda::conv2d_backward_data(dp<const float>(dy), dp<const float>(w), dp<const float>(bias), dp(dx), g, st(s));
      },
      py::arg("dy"), py::arg("weight"), py::arg("bias"), py::arg("dx"), py::arg("dims"), py::arg("stream"));
  m.def(
      "cuda_conv2d_backward_weight",
      [](uptr dy, uptr x, uptr dw, uptr db, const std::vector<int64_t>& dims, uptr s) {
        const cuda::Conv2d g = conv_dims(dims);
        py::gil_scoped_release nogil;
        cuda::conv2d_backward_weight(dp<const float>(dy), dp<const float>(x), dp(dw), dp(db), g, st(s));
      },
      py::arg("dy"), py::arg("x"), py::arg("dweight"), py::arg("dbias"), py::arg("dims"), py::arg("stream"));
  m.def(
      "cuda_channel_sum",
      [](uptr t, uptr out, index_t n, index_t c, index_t hw, uptr s) {
        py::gil_scoped_release nogil;
        cuda::channel_sum(dp<const float>(t), dp(out), n, c, hw, st(s));
      },
      py::arg("t"), py::arg("out"), py::arg("n"), py::arg("c"), py::arg("hw"), py::arg("stream"));
  m.def(
      "cuda_conv2d_path", [](const std::vector<int64_t>& dims) { return cuda::conv2d_path(conv_dims(dims)); },
      py::arg("dims"), "0: implicit GEMM, 1: depthwise direct kernels");

  m.def(
      "cuda_rnn_layer_forward",
      [](int mode, index_t T, index_t B, index_t I, index_t H, uptr x, uptr w_ih, uptr w_hh, uptr b_ih, uptr b_hh,
         uptr h0, uptr c0, uptr y, index_t ldy, index_t y_col, uptr h_n, uptr c_n, uptr gates, uptr cells, uptr work,
         bool reverse, uptr s) {
        cuda::RnnLayerCuda p;
        p.mode = mode;
        p.T = T; p.B = B; p.I = I; p.H = H;
        p.x = dp<const float>(x);
        p.w_ih = dp<const float>(w_ih);
        p.w_hh = dp<const float>(w_hh);
        p.b_ih = dp<const float>(b_ih);
        p.b_hh = dp<const float>(b_hh);
        p.h0 = dp<const float>(h0);
        p.c0 = dp<const float>(c0);
        p.y = dp(y); p.ldy = ldy; p.y_col = y_col;
        p.h_n = dp(h_n);
        p.c_n = dp(c_n);
        p.gates = dp(gates);
        p.cells = dp(cells);
        p.work = dp(work);
        p.reverse = reverse;
        FL_CHECK(mode != 0 || c_n, "cuda_rnn_layer_forward: the LSTM needs c_n");
        FL_CHECK(B == 0 || T == 0 || (x && w_ih && w_hh && y && h_n && work), "cuda_rnn_layer_forward: null buffer");
        py::gil_scoped_release nogil;
        cuda::rnn_layer_forward(p, st(s));
      },
      py::arg("mode"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("x"), py::arg("w_ih"),
      py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"), py::arg("h0"), py::arg("c0"), py::arg("y"), py::arg("ldy"),
      py::arg("y_col"), py::arg("h_n"), py::arg("c_n"), py::arg("gates"), py::arg("cells"), py::arg("work"),
      py::arg("reverse"), py::arg("stream"));

  m.def(
      "cuda_rnn_layer_backward",
      [](int mode, index_t T, index_t B, index_t I, index_t H, uptr x, uptr w_ih, uptr w_hh, uptr h0, uptr c0, uptr y,
         index_t ldy, index_t y_col, uptr gates, uptr cells, uptr dy, uptr dh_n, uptr dc_n, uptr dx,
         bool accumulate_dx, uptr dw_ih, uptr dw_hh, uptr db, uptr dh0, uptr dc0, uptr work_dg, uptr work_wt,
         uptr work_dc, bool reverse, uptr s) {
        cuda::RnnLayerBackwardCuda p;
        p.mode = mode;
        p.T = T; p.B = B; p.I = I; p.H = H;
        p.x = dp<const float>(x);
        p.w_ih = dp<const float>(w_ih);
        p.w_hh = dp<const float>(w_hh);
        p.h0 = dp<const float>(h0);
        p.c0 = dp<const float>(c0);
        p.y = dp<const float>(y); p.ldy = ldy; p.y_col = y_col;
        p.gates = dp<const float>(gates);
        p.cells = dp<const float>(cells);
        p.dy = dp<const float>(dy);
        p.dh_n = dp<const float>(dh_n);
        p.dc_n = dp<const float>(dc_n);
        p.dx = dp(dx);
        p.accumulate_dx = accumulate_dx;
        p.dw_ih = dp(dw_ih);
        p.dw_hh = dp(dw_hh);
        p.db = dp(db);
        p.dh0 = dp(dh0);
        p.dc0 = dp(dc0);
        p.work_dg = dp(work_dg);
        p.work_wt = dp(work_wt);
        p.work_dc = dp(work_dc);
        p.reverse = reverse;
        FL_CHECK(dw_ih && dw_hh, "cuda_rnn_layer_backward: null weight gradient");
        FL_CHECK(B == 0 || (dh0 && work_wt && (mode != 0 || work_dc)), "cuda_rnn_layer_backward: null buffer");
        py::gil_scoped_release nogil;
        cuda::rnn_layer_backward(p, st(s));
      },
      py::arg("mode"), py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("x"), py::arg("w_ih"),
      py::arg("w_hh"), py::arg("h0"), py::arg("c0"), py::arg("y"), py::arg("ldy"), py::arg("y_col"), py::arg("gates"),
      py::arg("cells"), py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"), py::arg("dx"), py::arg("accumulate_dx"),
      py::arg("dw_ih"), py::arg("dw_hh"), py::arg("db"), py::arg("dh0"), py::arg("dc0"), py::arg("work_dg"),
      py::arg("work_wt"), py::arg("work_dc"), py::arg("reverse"), py::arg("stream"));
#else
  (void)m;
#endif
}

}  // namespace bind
}  // namespace fl
