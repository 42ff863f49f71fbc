// Bindings of the loss family. Python (functional/_loss.py) validates, converts targets to
// contiguous int64 and allocates; the size checks here are the last line of defence.
#include "bindings/bind_common.h"
#include "loss/loss.h"

namespace fl {
namespace bind {

namespace {

const int64_t* in_int64(const py::array& a, const char* name, index_t size) {
  FL_CHECK(py::dtype::of<int64_t>().is(a.dtype()), name, ": internal error, expected int64");
  FL_CHECK(a.flags() & py::array::c_style, name, ": internal error, expected a C-contiguous array");
  FL_CHECK(static_cast<index_t>(a.size()) == size, name, ": internal error, expected ", size, " elements");
  return static_cast<const int64_t*>(a.data());
}

float* opt_out(const py::object& o, const char* name, index_t size) {
  if (o.is_none()) return nullptr;
  auto a = py::cast<py::array>(o);
  FL_CHECK(static_cast<index_t>(a.size()) == size, name, ": internal error, expected ", size, " elements");
  return out_ptr(a, name);
}

const float* opt_in(const py::object& o, const char* name, index_t size) {
  if (o.is_none()) return nullptr;
  auto a = py::cast<py::array>(o);
  FL_CHECK(static_cast<index_t>(a.size()) == size, name, ": internal error, expected ", size, " elements");
  return in_contig(a, name);
}

CrossEntropyParams ce_params(const py::array& logits, const py::array& target, index_t n, index_t c, index_t s,
                             float smoothing, int64_t ignore_index) {
  FL_CHECK(n >= 0 && c > 0 && s >= 0 && static_cast<index_t>(logits.size()) == n * c * s,
           "cross_entropy: internal error, size mismatch");
  CrossEntropyParams p;
  p.logits = in_contig(logits, "input");
  p.target = in_int64(target, "target", n * s);
  p.n = n;
  p.c = c;
  p.s = s;
  p.label_smoothing = smoothing;
  p.ignore_index = ignore_index;
  return p;
}

}  // namespace

void bind_loss(py::module_& m) {
  m.def("pointwise_loss", [](int kind, const py::array& x, const py::array& t, const py::object& out) {
    FL_CHECK(x.size() == t.size(), "loss: internal error, size mismatch");
    const float* xp = in_contig(x, "input");
    const float* tp = in_contig(t, "target");
    float* op = opt_out(out, "out", x.size());
    py::gil_scoped_release nogil;
    return pointwise_loss_forward(static_cast<PointwiseLoss>(kind), xp, tp, op, x.size());
  });
  m.def("pointwise_loss_backward", [](int kind, const py::array& x, const py::array& t, const py::object& g,
                                      float gscale, py::array& gx) {
    FL_CHECK(x.size() == t.size() && gx.size() == x.size(), "loss_backward: internal error, size mismatch");
    const float* xp = in_contig(x, "input");
    const float* tp = in_contig(t, "target");
    const float* gp = opt_in(g, "grad_out", x.size());
    float* gxp = out_ptr(gx, "grad_input");
    py::gil_scoped_release nogil;
    pointwise_loss_backward(static_cast<PointwiseLoss>(kind), xp, tp, gp, gscale, gxp, x.size());
  });
  m.def("cross_entropy", [](const py::array& logits, const py::array& target, index_t n, index_t c, index_t s,
                            float smoothing, int64_t ignore_index, const py::object& out) {
    const CrossEntropyParams p = ce_params(logits, target, n, c, s, smoothing, ignore_index);
    float* op = opt_out(out, "out", n * s);
    CrossEntropySum r;
    {
      py::gil_scoped_release nogil;
      r = cross_entropy_forward(p, op);
    }
    return py::make_tuple(r.total, r.count);
  });
  m.def("cross_entropy_backward", [](const py::array& logits, const py::array& target, index_t n, index_t c,
                                     index_t s, float smoothing, int64_t ignore_index, const py::object& g,
                                     float gscale, py::array& grad) {
    const CrossEntropyParams p = ce_params(logits, target, n, c, s, smoothing, ignore_index);
    const float* gp = opt_in(g, "grad_out", n * s);
    FL_CHECK(grad.size() == logits.size(), "cross_entropy_backward: internal error, size mismatch");
    float* op = out_ptr(grad, "grad_input");
    py::gil_scoped_release nogil;
    cross_entropy_backward(p, gp, gscale, op);
  });
}

}  // namespace bind
}  // namespace fl
