// Bindings of the conv family: conv2d forward / backward-data / backward-weight on NCHW
// float32 (conv_transpose2d is composed from them in Python). Sizes come from the arrays;
// the Python layer has validated them, these checks only keep a bad call in bounds.
#include "bindings/bind_common.h"
#include "conv/conv.h"
#include "conv/winograd.h"

namespace fl {
namespace bind {
namespace {

// x: (N, C, H, W) input side, y: (N, K, OH, OW) output side.
ConvParams make_params(const py::array& x, const py::array& y, index_t kh, index_t kw, index_t sh, index_t sw,
                       index_t ph, index_t pw, index_t dh, index_t dw, index_t groups) {
  require_ndim(x, 4, "x");
  require_ndim(y, 4, "y");
  ConvParams p;
  p.n = x.shape(0);
  p.c = x.shape(1);
  p.h = x.shape(2);
  p.w = x.shape(3);
  p.k = y.shape(1);
  p.oh = y.shape(2);
  p.ow = y.shape(3);
  p.kh = kh;
  p.kw = kw;
  p.sh = sh;
  p.sw = sw;
  p.ph = ph;
  p.pw = pw;
  p.dh = dh;
  p.dw = dw;
  p.groups = groups;
  FL_CHECK(y.shape(0) == p.n, "conv: batch sizes differ");
  check_conv_params(p);
  return p;
}

void check_weight(const py::array& w, const ConvParams& p) {
  require_ndim(w, 4, "weight");
  FL_CHECK(w.shape(0) == p.k && w.shape(1) == p.c / p.groups && w.shape(2) == p.kh && w.shape(3) == p.kw,
           "conv: internal error, weight shape does not match the geometry");
}

const float* bias_ptr(const py::object& b, index_t len) {
  const float* ptr = in_opt(b, "bias");
  if (ptr) FL_CHECK(py::cast<py::array>(b).size() == len, "conv: internal error, bias length");
  return ptr;
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def(
      "conv2d_forward",
      [](const py::array& x, const py::array& w, const py::object& bias, py::array& y, index_t sh, index_t sw,
         index_t ph, index_t pw, index_t dh, index_t dw, index_t groups) {
        require_ndim(w, 4, "weight");
        const ConvParams p = make_params(x, y, w.shape(2), w.shape(3), sh, sw, ph, pw, dh, dw, groups);
        check_weight(w, p);
        const float* xp = in_contig(x, "x");
        const float* wp = in_contig(w, "weight");
        const float* bp = bias_ptr(bias, p.k);
        float* yp = out_ptr(y, "out");
        py::gil_scoped_release nogil;
        conv2d_forward(p, xp, wp, bp, yp);
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("sh"), py::arg("sw"),
      py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("groups"),
      "out = conv2d(x, weight) + bias; padding is the top/left amount, out's shape sets the rest");
  m.def(
      "conv2d_forward_is_winograd",
      [](const py::array& x, const py::array& w, const py::array& y, index_t sh, index_t sw, index_t ph, index_t pw,
         index_t dh, index_t dw, index_t groups) {
        require_ndim(w, 4, "weight");
        return winograd_eligible(make_params(x, y, w.shape(2), w.shape(3), sh, sw, ph, pw, dh, dw, groups));
      },
      py::arg("x"), py::arg("weight"), py::arg("out"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"),
      py::arg("dh"), py::arg("dw"), py::arg("groups"),
      "whether conv2d_forward takes the Winograd F(2x2, 3x3) path for these shapes (for tests)");
  m.def(
      "conv2d_backward_data",
      [](const py::array& gy, const py::array& w, const py::object& bias, py::array& gx, index_t sh, index_t sw,
         index_t ph, index_t pw, index_t dh, index_t dw, index_t groups) {
        require_ndim(w, 4, "weight");
        const ConvParams p = make_params(gx, gy, w.shape(2), w.shape(3), sh, sw, ph, pw, dh, dw, groups);
        check_weight(w, p);
        const float* gyp = in_contig(gy, "grad_out");
        const float* wp = in_contig(w, "weight");
        const float* bp = bias_ptr(bias, p.c);
        float* gxp = out_ptr(gx, "out");
        py::gil_scoped_release nogil;
        conv2d_backward_data(p, gyp, wp, bp, gxp);
      },
      py::arg("grad_out"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("sh"), py::arg("sw"),
      py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("groups"),
      "out = conv2d's input gradient (+ bias per input channel: the transposed conv's forward)");
  m.def(
      "conv2d_backward_weight",
      [](const py::array& gy, const py::array& x, const py::object& gw, const py::object& gb, index_t kh,
         index_t kw, index_t sh, index_t sw, index_t ph, index_t pw, index_t dh, index_t dw, index_t groups) {
        const ConvParams p = make_params(x, gy, kh, kw, sh, sw, ph, pw, dh, dw, groups);
        const float* gyp = in_contig(gy, "grad_out");
        const float* xp = in_contig(x, "x");
        float* gwp = nullptr;
        float* gbp = nullptr;
        py::array gwa, gba;
        if (!gw.is_none()) {
          gwa = py::cast<py::array>(gw);
          check_weight(gwa, p);
          gwp = out_ptr(gwa, "grad_weight");
        }
        if (!gb.is_none()) {
          gba = py::cast<py::array>(gb);
          FL_CHECK(gba.size() == p.k, "conv: internal error, grad_bias length");
          gbp = out_ptr(gba, "grad_bias");
        }
        py::gil_scoped_release nogil;
        conv2d_backward_weight(p, gyp, xp, gwp, gbp);
      },
      py::arg("grad_out"), py::arg("x"), py::arg("grad_weight"), py::arg("grad_bias"), py::arg("kh"), py::arg("kw"),
      py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("groups"),
      "grad_weight / grad_bias of conv2d (either may be None)");
}

}  // namespace bind
}  // namespace fl
