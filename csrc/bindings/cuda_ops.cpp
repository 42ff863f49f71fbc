// Bindings of the CUDA kernels (all families but the elementwise activations, which bind in
// elementwise.cpp). Host-only C++: device pointers arrive as integers (CuPy's arr.data.ptr,
// 0 for None), the stream as CuPy's current stream pointer. python/fastlayers/_cuda.py has
// validated dtypes and shapes and allocated every output; the launchers re-check sizes
// (std::invalid_argument -> ValueError) and name any failing CUDA call (RuntimeError).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <vector>

#include "bindings/bind_common.h"
#if defined(FASTLAYERS_WITH_CUDA)
#include "bindings/cuda_bind_common.h"
#include "elementwise/softmax_cuda.h"
#include "gemm/gemm_cuda.h"
#include "loss/loss_cuda.h"
#include "misc/misc_cuda.h"
#include "norm/norm_cuda.h"
#include "pool/pool_cuda.h"
#endif

namespace fl {
namespace bind {

#if defined(FASTLAYERS_WITH_CUDA)
namespace {

// dims: [n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw]
cuda::Pool2d pool_dims(const std::vector<int64_t>& d) {
  FL_CHECK(d.size() == 14, "pool: internal error, expected 14 dims, got ", d.size());
  cuda::Pool2d p;
  p.n = d[0]; p.c = d[1]; p.h = d[2]; p.w = d[3]; p.oh = d[4]; p.ow = d[5];
  p.kh = int(d[6]); p.kw = int(d[7]); p.sh = int(d[8]); p.sw = int(d[9]);
  p.ph = int(d[10]); p.pw = int(d[11]); p.dh = int(d[12]); p.dw = int(d[13]);
  return p;
}

}  // namespace
#endif

void bind_cuda_ops(py::module_& m) {
#if defined(FASTLAYERS_WITH_CUDA)
  m.def(
      "cuda_gemm",
      [](int dtype, index_t m_, index_t n, index_t k, uptr a, index_t lda, bool trans_a, uptr b, index_t ldb,
         bool trans_b, uptr c, index_t ldc, float alpha, float beta, uptr row_bias, uptr col_bias, int act,
         index_t batch, index_t stride_a, index_t stride_b, index_t stride_c, uptr stream, int config) {
        FL_CHECK(dtype >= 0 && dtype <= 2, "cuda_gemm: bad dtype code ", dtype);
        FL_CHECK(act >= 0 && act <= 5, "cuda_gemm: bad activation code ", act);
        cuda::GemmCudaParams p;
        p.m = m_; p.n = n; p.k = k;
        p.a = dp<const void>(a); p.lda = lda; p.trans_a = trans_a;
        p.b = dp<const void>(b); p.ldb = ldb; p.trans_b = trans_b;
        p.c = dp<void>(c); p.ldc = ldc;
        p.alpha = alpha; p.beta = beta;
        p.row_bias = dp<const void>(row_bias);
        p.col_bias = dp<const void>(col_bias);
        p.act = act;
        p.dtype = static_cast<cuda::DType>(dtype);
        p.batch = batch; p.stride_a = stride_a; p.stride_b = stride_b; p.stride_c = stride_c;
        p.config = config;
        py::gil_scoped_release nogil;
        cuda::gemm(p, st(stream));
      },
      py::arg("dtype"), py::arg("m"), py::arg("n"), py::arg("k"), py::arg("a"), py::arg("lda"), py::arg("trans_a"),
      py::arg("b"), py::arg("ldb"), py::arg("trans_b"), py::arg("c"), py::arg("ldc"), py::arg("alpha"),
      py::arg("beta"), py::arg("row_bias"), py::arg("col_bias"), py::arg("act"), py::arg("batch"),
      py::arg("stride_a"), py::arg("stride_b"), py::arg("stride_c"), py::arg("stream"), py::arg("config") = -1);

  m.def("cuda_softmax", [](uptr x, uptr y, index_t outer, index_t len, index_t inner, bool log, uptr s) {
    py::gil_scoped_release nogil;
    cuda::softmax_forward(dp<const float>(x), dp(y), outer, len, inner, log, st(s));
  });
  m.def("cuda_softmax_backward",
        [](uptr g, uptr y, uptr dx, index_t outer, index_t len, index_t inner, bool log, uptr s) {
          py::gil_scoped_release nogil;
          cuda::softmax_backward(dp<const float>(g), dp<const float>(y), dp(dx), outer, len, inner, log, st(s));
        });

  m.def("cuda_layer_norm", [](uptr x, uptr w, uptr b, uptr y, uptr mean, uptr rstd, index_t rows, index_t cols,
                              float eps, uptr s) {
    py::gil_scoped_release nogil;
    cuda::layer_norm_forward(dp<const float>(x), dp<const float>(w), dp<const float>(b), dp(y), dp(mean), dp(rstd),
                             rows, cols, eps, st(s));
  });
  m.def("cuda_layer_norm_backward", [](uptr g, uptr x, uptr w, uptr dx, uptr dw, uptr db, uptr stats, index_t rows,
                                       index_t cols, float eps, uptr s) {
    py::gil_scoped_release nogil;
    cuda::layer_norm_backward(dp<const float>(g), dp<const float>(x), dp<const float>(w), dp(dx), dp(dw), dp(db),
                              dp(stats), rows, cols, eps, st(s));
  });
  m.def("cuda_batch_norm", [](uptr x, uptr w, uptr b, uptr y, uptr mean, uptr invstd, uptr rm, uptr rv, index_t n,
                              index_t c, index_t hw, bool training, float momentum, float eps, uptr s) {
    py::gil_scoped_release nogil;
    cuda::batch_norm_forward(dp<const float>(x), dp<const float>(w), dp<const float>(b), dp(y), dp(mean),
                             dp(invstd), dp(rm), dp(rv), n, c, hw, training, momentum, eps, st(s));
  });
  m.def("cuda_batch_norm_backward", [](uptr g, uptr x, uptr w, uptr mean, uptr invstd, uptr dx, uptr sums, index_t n,
                                       index_t c, index_t hw, bool training, uptr s) {
    py::gil_scoped_release nogil;
    cuda::batch_norm_backward(dp<const float>(g), dp<const float>(x), dp<const float>(w), dp<const float>(mean),
                              dp<const float>(invstd), dp(dx), dp(sums), n, c, hw, training, st(s));
  });

  m.def("cuda_point_loss",
        [](int kind, uptr x, uptr t, uptr out, uptr elem, index_t n, int reduction, uptr s) {
          FL_CHECK(kind >= 0 && kind <= 2, "cuda_point_loss: bad kind ", kind);
          py::gil_scoped_release nogil;
          cuda::point_loss_forward(static_cast<cuda::PointLoss>(kind), dp<const float>(x), dp<const float>(t),
                                   dp(out), dp(elem), n, reduction, st(s));
        });
  m.def("cuda_point_loss_backward",
        [](int kind, uptr g, uptr x, uptr t, uptr dx, index_t n, int reduction, uptr s) {
          FL_CHECK(kind >= 0 && kind <= 2, "cuda_point_loss_backward: bad kind ", kind);
          py::gil_scoped_release nogil;
          cuda::point_loss_backward(static_cast<cuda::PointLoss>(kind), dp<const float>(g), dp<const float>(x),
                                    dp<const float>(t), dp(dx), n, reduction, st(s));
        });
  m.def("cuda_cross_entropy", [](uptr logits, uptr target, uptr out, uptr elem, uptr count, index_t n, index_t c,
                                 index_t d, int reduction, float smoothing, int64_t ignore_index, uptr s) {
    py::gil_scoped_release nogil;
    cuda::cross_entropy_forward(dp<const float>(logits), dp<const int64_t>(target), dp(out), dp(elem),
                                dp<const float>(count), n, c, d, reduction, smoothing, ignore_index, st(s));
  });
  m.def("cuda_cross_entropy_backward", [](uptr g, uptr logits, uptr target, uptr count, uptr dx, index_t n, index_t c,
                                          index_t d, int reduction, float smoothing, int64_t ignore_index, uptr s) {
    py::gil_scoped_release nogil;
    cuda::cross_entropy_backward(dp<const float>(g), dp<const float>(logits), dp<const int64_t>(target),
                                 dp<const float>(count), dp(dx), n, c, d, reduction, smoothing, ignore_index, st(s));
  });

  m.def("cuda_max_pool2d", [](uptr x, uptr y, uptr idx, const std::vector<int64_t>& dims, uptr s) {
    const auto p = pool_dims(dims);
    py::gil_scoped_release nogil;
    cuda::max_pool2d_forward(dp<const float>(x), dp(y), dp<int64_t>(idx), p, st(s));
  });
  m.def("cuda_max_pool2d_backward", [](uptr g, uptr idx, uptr dx, const std::vector<int64_t>& dims, uptr s) {
    const auto p = pool_dims(dims);
    py::gil_scoped_release nogil;
    cuda::max_pool2d_backward(dp<const float>(g), dp<const int64_t>(idx), dp(dx), p, st(s));
  });
  m.def("cuda_avg_pool2d", [](uptr x, uptr y, const std::vector<int64_t>& dims, bool count_include_pad, uptr s) {
    const auto p = pool_dims(dims);
    py::gil_scoped_release nogil;
    cuda::avg_pool2d_forward(dp<const float>(x), dp(y), p, count_include_pad, st(s));
  });
  m.def("cuda_avg_pool2d_backward",
        [](uptr g, uptr dx, const std::vector<int64_t>& dims, bool count_include_pad, uptr s) {
          const auto p = pool_dims(dims);
          py::gil_scoped_release nogil;
          cuda::avg_pool2d_backward(dp<const float>(g), dp(dx), p, count_include_pad, st(s));
        });
  m.def("cuda_adaptive_avg_pool2d", [](uptr x, uptr y, const std::vector<int64_t>& dims, uptr s) {
    const auto p = pool_dims(dims);
    py::gil_scoped_release nogil;
    cuda::adaptive_avg_pool2d_forward(dp<const float>(x), dp(y), p, st(s));
  });
  m.def("cuda_adaptive_avg_pool2d_backward", [](uptr g, uptr dx, const std::vector<int64_t>& dims, uptr s) {
    const auto p = pool_dims(dims);
    py::gil_scoped_release nogil;
    cuda::adaptive_avg_pool2d_backward(dp<const float>(g), dp(dx), p, st(s));
  });
  m.def("cuda_adaptive_max_pool2d", [](uptr x, uptr y, uptr idx, const std::vector<int64_t>& dims, uptr s) {
    const auto p = pool_dims(dims);
    py::gil_scoped_release nogil;
    cuda::adaptive_max_pool2d_forward(dp<const float>(x), dp(y), dp<int64_t>(idx), p, st(s));
  });
  m.def("cuda_upsample_nearest2d", [](uptr x, uptr y, const std::vector<int64_t>& dims, uptr s) {
    const auto p = pool_dims(dims);
    py::gil_scoped_release nogil;
    cuda::upsample_nearest2d_forward(dp<const float>(x), dp(y), p, st(s));
  });
  m.def("cuda_upsample_nearest2d_backward", [](uptr g, uptr dx, const std::vector<int64_t>& dims, uptr s) {
    const auto p = pool_dims(dims);
    py::gil_scoped_release nogil;
    cuda::upsample_nearest2d_backward(dp<const float>(g), dp(dx), p, st(s));
  });

  m.def("cuda_dropout", [](uptr x, uptr y, uptr mask, index_t n, float p, std::uint64_t seed, uptr s) {
    py::gil_scoped_release nogil;
    cuda::dropout_forward(dp<const float>(x), dp(y), dp<std::uint8_t>(mask), n, p, seed, st(s));
  });
  m.def("cuda_dropout_backward", [](uptr g, uptr mask, uptr dx, index_t n, float scale, uptr s) {
    py::gil_scoped_release nogil;
    cuda::dropout_backward(dp<const float>(g), dp<const std::uint8_t>(mask), dp(dx), n, scale, st(s));
  });
  m.def("cuda_embedding", [](uptr idx, uptr w, uptr y, index_t n_idx, index_t num, index_t dim, uptr s) {
    py::gil_scoped_release nogil;
    cuda::embedding_forward(dp<const int64_t>(idx), dp<const float>(w), dp(y), n_idx, num, dim, st(s));
  });
  m.def("cuda_embedding_backward", [](uptr g, uptr idx, uptr dw, index_t n_idx, index_t num, index_t dim, uptr s) {
    py::gil_scoped_release nogil;
    cuda::embedding_backward(dp<const float>(g), dp<const int64_t>(idx), dp(dw), n_idx, num, dim, st(s));
  });
#else
  (void)m;
#endif
}

}  // namespace bind
}  // namespace fl
