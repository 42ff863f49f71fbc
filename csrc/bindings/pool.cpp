// Bindings of the pool family: max/avg/adaptive pooling and nearest upsampling on NCHW
// float32, forward and backward. Plane counts and sizes come from the arrays.
#include "bindings/bind_common.h"
#include "pool/pool.h"

namespace fl {
namespace bind {
namespace {

// x: (N, C, H, W), y: (N, C, OH, OW).
PoolParams make_params(const py::array& x, const py::array& y) {
  require_ndim(x, 4, "x");
  require_ndim(y, 4, "y");
  FL_CHECK(x.shape(0) == y.shape(0) && x.shape(1) == y.shape(1), "pool: internal error, N/C differ");
  PoolParams p;
  p.planes = x.shape(0) * x.shape(1);
  p.h = x.shape(2);
  p.w = x.shape(3);
  p.oh = y.shape(2);
  p.ow = y.shape(3);
  return p;
}

void set_window(PoolParams& p, index_t kh, index_t kw, index_t sh, index_t sw, index_t ph, index_t pw, index_t dh,
                index_t dw) {
  p.kh = kh;
  p.kw = kw;
  p.sh = sh;
  p.sw = sw;
  p.ph = ph;
  p.pw = pw;
  p.dh = dh;
  p.dw = dw;
}

int64_t* index_out(const py::object& o, const py::array& like) {
  if (o.is_none()) return nullptr;
  auto a = py::cast<py::array>(o);
  FL_CHECK(py::dtype::of<int64_t>().is(a.dtype()) && (a.flags() & py::array::c_style) && a.writeable() &&
               a.size() == like.size(),
           "indices: internal error, expected a writeable C-contiguous int64 array shaped like the output");
  return static_cast<int64_t*>(a.mutable_data());
}

const int64_t* index_in(const py::array& a, const py::array& like) {
  FL_CHECK(py::dtype::of<int64_t>().is(a.dtype()) && (a.flags() & py::array::c_style) && a.size() == like.size(),
           "indices: internal error, expected a C-contiguous int64 array shaped like grad_out");
  return static_cast<const int64_t*>(a.data());
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def("max_pool2d_forward", [](const py::array& x, py::array& y, const py::object& idx, index_t kh, index_t kw,
                                 index_t sh, index_t sw, index_t ph, index_t pw, index_t dh, index_t dw) {
    PoolParams p = make_params(x, y);
    set_window(p, kh, kw, sh, sw, ph, pw, dh, dw);
    const float* xp = in_contig(x, "x");
    float* yp = out_ptr(y, "out");
    int64_t* ip = index_out(idx, y);
    py::gil_scoped_release nogil;
    max_pool2d_forward(p, xp, yp, ip);
  });
  m.def("max_pool2d_backward", [](const py::array& gy, const py::array& idx, py::array& gx) {
    const PoolParams p = make_params(gx, gy);
    const float* gyp = in_contig(gy, "grad_out");
    const int64_t* ip = index_in(idx, gy);
    float* gxp = out_ptr(gx, "out");
    py::gil_scoped_release nogil;
    max_pool2d_backward(p, gyp, ip, gxp);
  });
  m.def("avg_pool2d_forward", [](const py::array& x, py::array& y, index_t kh, index_t kw, index_t sh, index_t sw,
                                 index_t ph, index_t pw, bool count_include_pad) {
    PoolParams p = make_params(x, y);
    set_window(p, kh, kw, sh, sw, ph, pw, 1, 1);
    const float* xp = in_contig(x, "x");
    float* yp = out_ptr(y, "out");
    py::gil_scoped_release nogil;
    avg_pool2d_forward(p, count_include_pad, xp, yp);
  });
  m.def("avg_pool2d_backward", [](const py::array& gy, py::array& gx, index_t kh, index_t kw, index_t sh, index_t sw,
                                  index_t ph, index_t pw, bool count_include_pad) {
    PoolParams p = make_params(gx, gy);
    set_window(p, kh, kw, sh, sw, ph, pw, 1, 1);
    const float* gyp = in_contig(gy, "grad_out");
    float* gxp = out_ptr(gx, "out");
    py::gil_scoped_release nogil;
    avg_pool2d_backward(p, count_include_pad, gyp, gxp);
  });
  m.def("adaptive_avg_pool2d_forward", [](const py::array& x, py::array& y) {
    const PoolParams p = make_params(x, y);
    const float* xp = in_contig(x, "x");
    float* yp = out_ptr(y, "out");
    py::gil_scoped_release nogil;
    adaptive_avg_pool2d_forward(p, xp, yp);
  });
  m.def("adaptive_avg_pool2d_backward", [](const py::array& gy, py::array& gx) {
    const PoolParams p = make_params(gx, gy);
    const float* gyp = in_contig(gy, "grad_out");
    float* gxp = out_ptr(gx, "out");
    py::gil_scoped_release nogil;
    adaptive_avg_pool2d_backward(p, gyp, gxp);
  });
  m.def("adaptive_max_pool2d_forward", [](const py::array& x, py::array& y, const py::object& idx) {
    const PoolParams p = make_params(x, y);
    const float* xp = in_contig(x, "x");
    float* yp = out_ptr(y, "out");
    int64_t* ip = index_out(idx, y);
    py::gil_scoped_release nogil;
    adaptive_max_pool2d_forward(p, xp, yp, ip);
  });
  m.def("upsample_nearest2d_forward", [](const py::array& x, py::array& y) {
    PoolParams p = make_params(x, y);
    FL_CHECK(p.oh % p.h == 0 && p.ow % p.w == 0, "upsample_nearest2d: internal error, output not a multiple");
    p.sh = p.oh / p.h;
    p.sw = p.ow / p.w;
    const float* xp = in_contig(x, "x");
    float* yp = out_ptr(y, "out");
    py::gil_scoped_release nogil;
    upsample_nearest2d_forward(p, xp, yp);
  });
  m.def("upsample_nearest2d_backward", [](const py::array& gy, py::array& gx) {
    PoolParams p = make_params(gx, gy);
    FL_CHECK(p.oh % p.h == 0 && p.ow % p.w == 0, "upsample_nearest2d: internal error, output not a multiple");
    p.sh = p.oh / p.h;
    p.sw = p.ow / p.w;
    const float* gyp = in_contig(gy, "grad_out");
    float* gxp = out_ptr(gx, "out");
    py::gil_scoped_release nogil;
    upsample_nearest2d_backward(p, gyp, gxp);
  });
}

}  // namespace bind
}  // namespace fl
