// Bindings of the norm family (batch norm, layer norm). Python (functional/_norm.py)
// validates and allocates; the size checks here are the last line of defence against a
// read out of bounds.
#include "bindings/bind_common.h"
#include "norm/norm.h"

namespace fl {
namespace bind {

namespace {

const float* in_sized(const py::object& o, const char* name, index_t size) {
  if (o.is_none()) return nullptr;
  auto a = py::cast<py::array>(o);
  FL_CHECK(static_cast<index_t>(a.size()) == size, name, ": internal error, expected ", size, " elements, got ",
           a.size());
  return in_contig(a, name);
}

float* out_sized(const py::object& o, const char* name, index_t size) {
  if (o.is_none()) return nullptr;
  auto a = py::cast<py::array>(o);
  FL_CHECK(static_cast<index_t>(a.size()) == size, name, ": internal error, expected ", size, " elements, got ",
           a.size());
  return out_ptr(a, name);
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def(
      "batch_norm",
      [](const py::array& x, py::array& y, index_t n, index_t c, index_t s, const py::object& weight,
         const py::object& bias, const py::object& running_mean, const py::object& running_var,
         const py::object& save_mean, const py::object& save_invstd, bool training, float momentum, float eps) {
        FL_CHECK(n >= 0 && c >= 0 && s >= 0 && static_cast<index_t>(x.size()) == n * c * s &&
                     y.size() == x.size(),
                 "batch_norm: internal error, size mismatch");
        BatchNormParams p;
        p.x = in_contig(x, "x");
        p.y = out_ptr(y, "out");
        p.n = n;
        p.c = c;
        p.s = s;
        p.weight = in_sized(weight, "weight", c);
        p.bias = in_sized(bias, "bias", c);
        p.running_mean = out_sized(running_mean, "running_mean", c);
        p.running_var = out_sized(running_var, "running_var", c);
        p.save_mean = out_sized(save_mean, "save_mean", c);
        p.save_invstd = out_sized(save_invstd, "save_invstd", c);
        p.training = training;
        p.momentum = momentum;
        p.eps = eps;
        py::gil_scoped_release nogil;
        batch_norm_forward(p);
      },
      py::arg("x"), py::arg("out"), py::arg("n"), py::arg("c"), py::arg("s"), py::arg("weight"), py::arg("bias"),
      py::arg("running_mean"), py::arg("running_var"), py::arg("save_mean"), py::arg("save_invstd"),
      py::arg("training"), py::arg("momentum"), py::arg("eps"));
  m.def(
      "batch_norm_backward",
      [](const py::array& g, const py::array& x, const py::object& weight, const py::array& mean,
         const py::array& invstd, py::array& gx, const py::object& gw, const py::object& gb, index_t n, index_t c,
         index_t s, bool training) {
        FL_CHECK(n >= 0 && c >= 0 && s >= 0 && static_cast<index_t>(x.size()) == n * c * s &&
                     g.size() == x.size() && gx.size() == x.size(),
                 "batch_norm_backward: internal error, size mismatch");
        const float* gp = in_contig(g, "grad_out");
        const float* xp = in_contig(x, "x");
        const float* wp = in_sized(weight, "weight", c);
        const float* mp = in_sized(mean, "mean", c);
        const float* ip = in_sized(invstd, "invstd", c);
        float* gxp = out_ptr(gx, "grad_x");
        float* gwp = out_sized(gw, "grad_weight", c);
        float* gbp = out_sized(gb, "grad_bias", c);
        py::gil_scoped_release nogil;
        batch_norm_backward(gp, xp, wp, mp, ip, gxp, gwp, gbp, n, c, s, training);
      });
  m.def(
      "layer_norm",
      [](const py::array& x, const py::object& weight, const py::object& bias, py::array& y, const py::object& mean,
         const py::object& rstd, index_t rows, index_t d, float eps) {
        FL_CHECK(rows >= 0 && d > 0 && static_cast<index_t>(x.size()) == rows * d && y.size() == x.size(),
                 "layer_norm: internal error, size mismatch");
        const float* xp = in_contig(x, "x");
        const float* wp = in_sized(weight, "weight", d);
        const float* bp = in_sized(bias, "bias", d);
        float* yp = out_ptr(y, "out");
        float* mp = out_sized(mean, "mean", rows);
        float* rp = out_sized(rstd, "rstd", rows);
        py::gil_scoped_release nogil;
        layer_norm_forward(xp, wp, bp, yp, mp, rp, rows, d, eps);
      });
  m.def(
      "layer_norm_backward",
      [](const py::array& g, const py::array& x, const py::object& weight, const py::array& mean,
         const py::array& rstd, py::array& gx, const py::object& gw, const py::object& gb, index_t rows, index_t d) {
        FL_CHECK(rows >= 0 && d > 0 && static_cast<index_t>(x.size()) == rows * d && g.size() == x.size() &&
                     gx.size() == x.size(),
                 "layer_norm_backward: internal error, size mismatch");
        const float* gp = in_contig(g, "grad_out");
        const float* xp = in_contig(x, "x");
        const float* wp = in_sized(weight, "weight", d);
        const float* mp = in_sized(mean, "mean", rows);
        const float* rp = in_sized(rstd, "rstd", rows);
        float* gxp = out_ptr(gx, "grad_x");
        float* gwp = out_sized(gw, "grad_weight", d);
        float* gbp = out_sized(gb, "grad_bias", d);
        py::gil_scoped_release nogil;
        layer_norm_backward(gp, xp, wp, mp, rp, gxp, gwp, gbp, rows, d);
      });
}

}  // namespace bind
}  // namespace fl
