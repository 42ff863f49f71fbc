// Bindings of dropout and embedding. Python (functional/_misc.py) validates, converts indices
// to contiguous int64 and allocates; the checks here are the last line of defence.
#include "bindings/bind_common.h"
#include "misc/misc.h"

namespace fl {
namespace bind {

namespace {

const int64_t* in_int64(const py::array& a, const char* name) {
  FL_CHECK(py::dtype::of<int64_t>().is(a.dtype()), name, ": internal error, expected int64");
  FL_CHECK(a.flags() & py::array::c_style, name, ": internal error, expected a C-contiguous array");
  return static_cast<const int64_t*>(a.data());
}

uint8_t* mask_ptr(py::array& a, const char* name, bool write) {
  FL_CHECK(py::dtype::of<bool>().is(a.dtype()), name, ": expected a bool array, got ", std::string(py::str(a.dtype())));
  FL_CHECK(a.flags() & py::array::c_style, name, ": internal error, expected a C-contiguous array");
  if (write) {
    FL_CHECK(a.writeable(), name, ": output is read-only");
    return static_cast<uint8_t*>(a.mutable_data());
  }
  return const_cast<uint8_t*>(static_cast<const uint8_t*>(a.data()));
}

}  // namespace

void bind_misc(py::module_& m) {
  m.def("dropout", [](const py::array& x, py::array& y, py::array& mask, double keep_prob, float scale,
                      uint64_t seed) {
    FL_CHECK(y.size() == x.size() && mask.size() == x.size(), "dropout: internal error, size mismatch");
    const float* xp = in_contig(x, "x");
    float* yp = out_ptr(y, "out");
    uint8_t* mp = mask_ptr(mask, "mask", true);
    py::gil_scoped_release nogil;
    dropout_forward(xp, yp, mp, x.size(), keep_prob, scale, seed);
  });
  m.def("dropout_backward", [](const py::array& g, py::array& mask, py::array& gx, float scale) {
    FL_CHECK(gx.size() == g.size() && mask.size() == g.size(), "dropout_backward: internal error, size mismatch");
    const float* gp = in_contig(g, "grad_out");
    const uint8_t* mp = mask_ptr(mask, "mask", false);
    float* gxp = out_ptr(gx, "grad_x");
    py::gil_scoped_release nogil;
    dropout_backward(gp, mp, gxp, g.size(), scale);
  });
  m.def("embedding", [](const py::array& idx, const py::array& weight, py::array& out, index_t v, index_t d) {
    FL_CHECK(v >= 0 && d >= 0 && static_cast<index_t>(weight.size()) == v * d &&
                 static_cast<index_t>(out.size()) == static_cast<index_t>(idx.size()) * d,
             "embedding: internal error, size mismatch");
    const int64_t* ip = in_int64(idx, "indices");
    const float* wp = in_contig(weight, "weight");
    float* op = out_ptr(out, "out");
    py::gil_scoped_release nogil;
    embedding_forward(ip, idx.size(), wp, v, d, op);
  });
  m.def("embedding_backward", [](const py::array& g, const py::array& idx, py::array& gw, index_t v, index_t d) {
    FL_CHECK(v >= 0 && d >= 0 && static_cast<index_t>(gw.size()) == v * d &&
                 static_cast<index_t>(g.size()) == static_cast<index_t>(idx.size()) * d,
             "embedding_backward: internal error, size mismatch");
    const float* gp = in_contig(g, "grad_out");
    const int64_t* ip = in_int64(idx, "indices");
    float* wp = out_ptr(gw, "grad_weight");
    py::gil_scoped_release nogil;
    embedding_backward(gp, ip, idx.size(), v, d, wp);
  });
}

}  // namespace bind
}  // namespace fl
