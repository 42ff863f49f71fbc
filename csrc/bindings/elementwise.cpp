// Bindings of the elementwise family (CPU and, when built, CUDA).
#include "bindings/bind_common.h"
#include "elementwise/elementwise.h"
#if defined(FASTLAYERS_WITH_CUDA)
#include "elementwise/elementwise_cuda.h"
#endif

namespace fl {
namespace bind {

void bind_elementwise(py::module_& m) {
  m.def(
      "unary",
      [](int op, const py::array& x, py::array& y, float slope) {
        FL_CHECK(x.size() == y.size(), "unary: size mismatch");
        const float* xp = in_contig(x, "x");
        float* yp = out_ptr(y, "out");
        py::gil_scoped_release nogil;
        unary_forward(static_cast<UnaryOp>(op), xp, yp, x.size(), slope);
      },
      py::arg("op"), py::arg("x"), py::arg("out"), py::arg("slope") = 0.0f);
  m.def(
      "unary_backward",
      [](int op, const py::array& g, const py::array& x, const py::object& y, py::array& dx, float slope) {
        FL_CHECK(x.size() == g.size() && dx.size() == x.size(), "unary_backward: size mismatch");
        const float* gp = in_contig(g, "grad_out");
        const float* xp = in_contig(x, "x");
        const float* yp = in_opt(y, "y");
        if (yp) FL_CHECK(py::cast<py::array>(y).size() == x.size(), "unary_backward: y size mismatch");
        float* dxp = out_ptr(dx, "out");
        py::gil_scoped_release nogil;
        unary_backward(static_cast<UnaryOp>(op), gp, xp, yp, dxp, x.size(), slope);
      },
      py::arg("op"), py::arg("grad"), py::arg("x"), py::arg("y"), py::arg("out"), py::arg("slope") = 0.0f);
  m.def(
      "softmax",
      [](const py::array& x, py::array& y, index_t outer, index_t len, index_t inner, bool log) {
        FL_CHECK(outer * len * inner == x.size() && x.size() == y.size(), "softmax: size mismatch");
        const float* xp = in_contig(x, "x");
        float* yp = out_ptr(y, "out");
        py::gil_scoped_release nogil;
        softmax_forward(xp, yp, outer, len, inner, log);
      });
  m.def(
      "softmax_backward",
      [](const py::array& g, const py::array& y, py::array& dx, index_t outer, index_t len, index_t inner,
         bool log) {
        FL_CHECK(outer * len * inner == y.size() && g.size() == y.size() && dx.size() == y.size(),
                 "softmax_backward: size mismatch");
        const float* gp = in_contig(g, "grad_out");
        const float* yp = in_contig(y, "y");
        float* dxp = out_ptr(dx, "out");
        py::gil_scoped_release nogil;
        softmax_backward(gp, yp, dxp, outer, len, inner, log);
      });

#if defined(FASTLAYERS_WITH_CUDA)
  m.def("cuda_unary", [](int op, std::uintptr_t x, std::uintptr_t y, index_t n, float slope, std::uintptr_t s) {
    py::gil_scoped_release nogil;
    cuda::unary_forward(static_cast<UnaryOp>(op), dev_in(x), dev_out(y), n, slope, dev_stream(s));
  });
  m.def("cuda_unary_backward",
        [](int op, std::uintptr_t g, std::uintptr_t x, std::uintptr_t dx, index_t n, float slope, std::uintptr_t s) {
          py::gil_scoped_release nogil;
          cuda::unary_backward(static_cast<UnaryOp>(op), dev_in(g), dev_in(x), nullptr, dev_out(dx), n, slope,
                               dev_stream(s));
        });
#endif
}

}  // namespace bind
}  // namespace fl
