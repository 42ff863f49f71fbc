// Bindings of the rnn family: one layer and one direction per call (Python stacks them).
// python/fastlayers/functional/_rnn.py has checked every shape and allocated the outputs;
// the checks here only keep a bug up there from reading or writing out of bounds.
#include <vector>

#include "bindings/bind_common.h"
#include "rnn/rnn.h"

namespace fl {
namespace bind {
namespace {

void require_shape(const py::array& a, std::vector<index_t> shape, const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
  FL_CHECK(ok, name, ": internal error, unexpected shape");
}

const float* opt_in(const py::object& o, std::vector<index_t> shape, const char* name) {
  if (o.is_none()) return nullptr;
  auto a = py::cast<py::array>(o);
  require_shape(a, std::move(shape), name);
  return in_contig(a, name);
}

float* opt_out(const py::object& o, std::vector<index_t> shape, const char* name) {
  if (o.is_none()) return nullptr;
  auto a = py::cast<py::array>(o);
  require_shape(a, std::move(shape), name);
  return out_ptr(a, name);
}

RnnMode to_mode(int mode) {
  FL_CHECK(mode >= 0 && mode <= 2, "rnn: unknown mode ", mode);
  return static_cast<RnnMode>(mode);
}

}  // namespace

void bind_rnn(py::module_& m) {
  m.def(
      "rnn_layer_forward",
      [](int mode, const py::array& x, const py::array& w_ih, const py::array& w_hh, const py::object& b_ih,
         const py::object& b_hh, const py::object& h0, const py::object& c0, py::array& y, index_t y_col,
         py::array& h_n, const py::object& c_n, const py::object& gates, const py::object& cs, bool reverse) {
        RnnLayerForward p;
        p.mode = to_mode(mode);
        const bool lstm = p.mode == RnnMode::lstm;
        require_ndim(x, 3, "x");
        require_ndim(w_hh, 2, "w_hh");
        p.T = x.shape(0);
        p.B = x.shape(1);
        p.I = x.shape(2);
        p.H = w_hh.shape(1);
        const index_t GH = rnn_gate_count(p.mode) * p.H;
        require_shape(w_ih, {GH, p.I}, "w_ih");
        require_shape(w_hh, {GH, p.H}, "w_hh");
        p.x = in_contig(x, "x");
        p.ldx = p.I;
        p.w_ih = in_contig(w_ih, "w_ih");
        p.w_hh = in_contig(w_hh, "w_hh");
        p.b_ih = opt_in(b_ih, {GH}, "b_ih");
        p.b_hh = opt_in(b_hh, {GH}, "b_hh");
        p.h0 = opt_in(h0, {p.B, p.H}, "h0");
        p.c0 = lstm ? opt_in(c0, {p.B, p.H}, "c0") : nullptr;
        require_ndim(y, 3, "y");
        FL_CHECK(y.shape(0) == p.T && y.shape(1) == p.B && y_col >= 0 && y_col + p.H <= y.shape(2),
                 "y: internal error, unexpected shape");
        p.y = out_ptr(y, "y") + y_col;
        p.ldy = y.shape(2);
        require_shape(h_n, {p.B, p.H}, "h_n");
        p.h_n = out_ptr(h_n, "h_n");
        if (lstm) {
          p.c_n = opt_out(c_n, {p.B, p.H}, "c_n");
          FL_CHECK(p.c_n, "c_n: internal error, required for the LSTM");
          p.gates = opt_out(gates, {p.T * p.B, GH}, "gates");
          p.cs = opt_out(cs, {p.T * p.B, p.H}, "cs");
          FL_CHECK(!p.gates == !p.cs, "gates/cs: internal error, give both or neither");
        }
        p.reverse = reverse;
        py::gil_scoped_release nogil;
        run_rnn_layer_forward(p);
      },
      py::arg("mode"), py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"),
      py::arg("h0"), py::arg("c0"), py::arg("y"), py::arg("y_col"), py::arg("h_n"), py::arg("c_n"),
      py::arg("gates"), py::arg("cs"), py::arg("reverse"),
      "one recurrent layer, one direction, over a (T, B, I) sequence; writes y[:, :, y_col:y_col+H]");

  m.def(
      "rnn_layer_backward",
      [](int mode, const py::array& x, const py::array& w_ih, const py::array& w_hh, const py::object& h0,
         const py::object& c0, const py::array& y, index_t y_col, const py::object& gates, const py::object& cs,
         const py::array& dy, const py::object& dh_n, const py::object& dc_n, py::array& dx, bool accumulate_dx,
         py::array& dw_ih, py::array& dw_hh, const py::object& db, py::array& dh0, const py::object& dc0,
         bool reverse) {
        RnnLayerBackward p;
        p.mode = to_mode(mode);
        const bool lstm = p.mode == RnnMode::lstm;
        require_ndim(x, 3, "x");
        require_ndim(w_hh, 2, "w_hh");
        p.T = x.shape(0);
        p.B = x.shape(1);
        p.I = x.shape(2);
        p.H = w_hh.shape(1);
        const index_t GH = rnn_gate_count(p.mode) * p.H;
        require_shape(w_ih, {GH, p.I}, "w_ih");
        require_shape(w_hh, {GH, p.H}, "w_hh");
        p.x = in_contig(x, "x");
        p.ldx = p.I;
        p.w_ih = in_contig(w_ih, "w_ih");
        p.w_hh = in_contig(w_hh, "w_hh");
        p.h0 = opt_in(h0, {p.B, p.H}, "h0");
        require_ndim(y, 3, "y");
        FL_CHECK(y.shape(0) == p.T && y.shape(1) == p.B && y_col >= 0 && y_col + p.H <= y.shape(2),
                 "y: internal error, unexpected shape");
        require_shape(dy, {p.T, p.B, y.shape(2)}, "dy");
        p.y = in_contig(y, "y") + y_col;
        p.ldy = y.shape(2);
        p.dy = in_contig(dy, "dy") + y_col;
        p.lddy = y.shape(2);
        p.dh_n = opt_in(dh_n, {p.B, p.H}, "dh_n");
        require_shape(dx, {p.T, p.B, p.I}, "dx");
        p.dx = out_ptr(dx, "dx");
        p.lddx = p.I;
        p.accumulate_dx = accumulate_dx;
        require_shape(dw_ih, {GH, p.I}, "dw_ih");
        require_shape(dw_hh, {GH, p.H}, "dw_hh");
        p.dw_ih = out_ptr(dw_ih, "dw_ih");
        p.dw_hh = out_ptr(dw_hh, "dw_hh");
        p.db = opt_out(db, {GH}, "db");
        require_shape(dh0, {p.B, p.H}, "dh0");
        p.dh0 = out_ptr(dh0, "dh0");
        if (lstm) {
          p.c0 = opt_in(c0, {p.B, p.H}, "c0");
          p.gates = opt_in(gates, {p.T * p.B, GH}, "gates");
          p.cs = opt_in(cs, {p.T * p.B, p.H}, "cs");
          FL_CHECK(p.gates && p.cs, "gates/cs: internal error, required for the LSTM backward");
          p.dc_n = opt_in(dc_n, {p.B, p.H}, "dc_n");
          p.dc0 = opt_out(dc0, {p.B, p.H}, "dc0");
          FL_CHECK(p.dc0, "dc0: internal error, required for the LSTM backward");
        }
        p.reverse = reverse;
        py::gil_scoped_release nogil;
        run_rnn_layer_backward(p);
      },
      py::arg("mode"), py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("h0"), py::arg("c0"), py::arg("y"),
      py::arg("y_col"), py::arg("gates"), py::arg("cs"), py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"),
      py::arg("dx"), py::arg("accumulate_dx"), py::arg("dw_ih"), py::arg("dw_hh"), py::arg("db"), py::arg("dh0"),
      py::arg("dc0"), py::arg("reverse"),
      "backward through time of one recurrent layer and direction (see rnn_layer_forward)");
}

}  // namespace bind
}  // namespace fl
