// Bindings of the GEMM family: gemm (strided 2-D) and gemm_batched (3-D with batch strides).
#include "bindings/bind_common.h"
#include "gemm/gemm.h"
#include "gemm/peak.h"

namespace fl {
namespace bind {
namespace {

// a: (m, k), b: (k, n) of any strides (op(a), op(b) are already views); out: (m, n) C-contig.
GemmParams make_params(const py::array& a, const py::array& b, py::array& out, int dim0, float alpha,
                       float beta, const py::object& row_bias, const py::object& col_bias, int act) {
  GemmParams p;
  p.m = a.shape(dim0);
  p.k = a.shape(dim0 + 1);
  p.n = b.shape(dim0 + 1);
  FL_CHECK(b.shape(dim0) == p.k, "gemm: inner dimensions differ: a has k=", p.k, ", b has k=", b.shape(dim0));
  FL_CHECK(out.shape(dim0) == p.m && out.shape(dim0 + 1) == p.n, "gemm: out has the wrong shape");
  p.a = in_ptr(a, "a");
  p.a_rs = elem_stride(a, dim0, "a");
  p.a_cs = elem_stride(a, dim0 + 1, "a");
  p.b = in_ptr(b, "b");
  p.b_rs = elem_stride(b, dim0, "b");
  p.b_cs = elem_stride(b, dim0 + 1, "b");
  p.c = out_ptr(out, "out");
  p.ldc = p.n;
  p.alpha = alpha;
  p.beta = beta;
  p.row_bias = in_opt(row_bias, "row_bias");
  p.col_bias = in_opt(col_bias, "col_bias");
  FL_CHECK(act >= 0 && act <= 5, "gemm: unknown activation code ", act);
  p.act = static_cast<Activation>(act);
  return p;
}

}  // namespace

void bind_gemm(py::module_& m) {
  m.def(
      "fma_peak_gflops",
      [](int threads) {
        FL_CHECK(threads >= 1, "threads must be >= 1");
        py::gil_scoped_release nogil;
        return measure_fma_peak_gflops(threads);
      },
      py::arg("threads"), "measured single-precision FMA peak (GFLOP/s) of the active ISA");
  m.def(
      "gemm",
      [](const py::array& a, const py::array& b, py::array& out, float alpha, float beta,
         const py::object& row_bias, const py::object& col_bias, int act) {
        require_ndim(a, 2, "a");
        require_ndim(b, 2, "b");
        require_ndim(out, 2, "out");
        GemmParams p = make_params(a, b, out, 0, alpha, beta, row_bias, col_bias, act);
        if (p.row_bias) FL_CHECK(py::cast<py::array>(row_bias).size() == p.m, "gemm: row_bias length");
        if (p.col_bias) FL_CHECK(py::cast<py::array>(col_bias).size() == p.n, "gemm: col_bias length");
        py::gil_scoped_release nogil;
        run_gemm(p);
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f,
      py::arg("row_bias") = py::none(), py::arg("col_bias") = py::none(), py::arg("act") = 0,
      "out = act(alpha * a @ b + beta * out + bias); a, b any strides, out C-contiguous");
  m.def(
      "gemm_batched",
      [](const py::array& a, const py::array& b, py::array& out, const py::object& col_bias, int act) {
        require_ndim(a, 3, "a");
        require_ndim(b, 3, "b");
        require_ndim(out, 3, "out");
        const index_t batch = out.shape(0);
        FL_CHECK(a.shape(0) == batch && b.shape(0) == batch, "gemm_batched: batch sizes differ");
        GemmParams p = make_params(a, b, out, 1, 1.0f, 0.0f, py::none(), col_bias, act);
        if (p.col_bias) FL_CHECK(py::cast<py::array>(col_bias).size() == p.n, "gemm: col_bias length");
        const index_t a_bs = elem_stride(a, 0, "a"), b_bs = elem_stride(b, 0, "b");
        const index_t c_bs = p.m * p.n;
        py::gil_scoped_release nogil;
        run_gemm_batched(p, batch, a_bs, b_bs, c_bs);
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("col_bias") = py::none(), py::arg("act") = 0);
}

}  // namespace bind
}  // namespace fl
