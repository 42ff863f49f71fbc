// Bindings of the CUDA attention kernels (csrc/attention/attention_cuda.h). Host-only C++:
// device pointers arrive as integers (CuPy's arr.data.ptr, 0 for None), the stream as CuPy's
// current stream pointer. python/fastlayers/_cuda_attention.py has validated every argument,
// chosen the path and allocated the outputs and the workspace; each matrix stack crosses as
// (data pointer, device pointer to int64 offsets, row stride, column stride) in elements.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <tuple>

#include "bindings/bind_common.h"
#if defined(FASTLAYERS_WITH_CUDA)
#include "attention/attention_cuda.h"
#include "bindings/cuda_bind_common.h"
#endif

namespace fl {
namespace bind {

#if defined(FASTLAYERS_WITH_CUDA)
namespace {

using Mats = std::tuple<uptr, uptr, int64_t, int64_t>;  // (ptr, offsets ptr, rs, cs)

cuda::AttnMats mats(const Mats& m) {
  cuda::AttnMats r;
  r.ptr = reinterpret_cast<const void*>(std::get<0>(m));
  r.off = reinterpret_cast<const int64_t*>(std::get<1>(m));
  r.rs = std::get<2>(m);
  r.cs = std::get<3>(m);
  return r;
}

cuda::AttentionCudaParams common(int dtype, int path, const std::vector<int64_t>& dims, const Mats& q,
                                 const Mats& k, const Mats& v, int mask_kind, const Mats& mask, bool causal,
                                 float scale) {
  FL_CHECK(dims.size() == 6, "cuda attention: internal error, expected 6 sizes, got ", dims.size());
  FL_CHECK(path == 0 || path == 1, "cuda attention: bad path ", path);
  cuda::AttentionCudaParams p;
  p.dtype = dtype;
  p.path = static_cast<cuda::AttnPath>(path);
  p.nbh = dims[0]; p.group = dims[1]; p.L = dims[2]; p.S = dims[3]; p.E = dims[4]; p.Ev = dims[5];
  p.q = mats(q); p.k = mats(k); p.v = mats(v);
  p.mask_kind = mask_kind;
  if (mask_kind) p.mask = mats(mask);
  p.causal = causal;
  p.scale = scale;
  return p;
}

}  // namespace
#endif

void bind_cuda_attention(py::module_& m) {
#if defined(FASTLAYERS_WITH_CUDA)
  m.def(
      "cuda_attention_forward",
      [](int dtype, int path, const std::vector<int64_t>& dims, const Mats& q, const Mats& k, const Mats& v,
         int mask_kind, const Mats& mask, bool causal, float scale, uptr out, uptr lse, uptr stream) {
        auto p = common(dtype, path, dims, q, k, v, mask_kind, mask, causal, scale);
        p.out = reinterpret_cast<void*>(out);
        p.lse = reinterpret_cast<float*>(lse);
        py::gil_scoped_release nogil;
        cuda::attention_forward(p, reinterpret_cast<cuda::Stream>(stream));
      },
      py::arg("dtype"), py::arg("path"), py::arg("dims"), py::arg("q"), py::arg("k"), py::arg("v"),
      py::arg("mask_kind"), py::arg("mask"), py::arg("causal"), py::arg("scale"), py::arg("out"), py::arg("lse"),
      py::arg("stream"),
      "attention forward; dims = (nbh, group, L, S, E, Ev); out (nbh, L, Ev), lse (nbh, L) float32 or 0");
  m.def(
      "cuda_attention_backward",
      [](int dtype, int path, const std::vector<int64_t>& dims, const Mats& q, const Mats& k, const Mats& v,
         int mask_kind, const Mats& mask, bool causal, float scale, uptr dout, uptr o, uptr lse, uptr dq, uptr dk,
         uptr dv, uptr workspace, uptr stream) {
        auto p = common(dtype, path, dims, q, k, v, mask_kind, mask, causal, scale);
        p.dout = reinterpret_cast<const void*>(dout);
        p.o = reinterpret_cast<const void*>(o);
        p.lse_in = reinterpret_cast<const float*>(lse);
        p.dq = reinterpret_cast<void*>(dq);
        p.dk = reinterpret_cast<void*>(dk);
        p.dv = reinterpret_cast<void*>(dv);
        p.workspace = reinterpret_cast<float*>(workspace);
        py::gil_scoped_release nogil;
        cuda::attention_backward(p, reinterpret_cast<cuda::Stream>(stream));
      },
      py::arg("dtype"), py::arg("path"), py::arg("dims"), py::arg("q"), py::arg("k"), py::arg("v"),
      py::arg("mask_kind"), py::arg("mask"), py::arg("causal"), py::arg("scale"), py::arg("dout"), py::arg("o"),
      py::arg("lse"), py::arg("dq"), py::arg("dk"), py::arg("dv"), py::arg("workspace"), py::arg("stream"),
      "attention backward (recomputes P from lse); workspace: cuda_attention_workspace(...) float32 elements");
  m.def(
      "cuda_attention_workspace",
      [](int path, const std::vector<int64_t>& dims) {
        FL_CHECK(dims.size() == 6, "cuda attention: internal error, expected 6 sizes");
        cuda::AttentionCudaParams p;
        p.path = static_cast<cuda::AttnPath>(path);
        p.nbh = dims[0]; p.L = dims[2]; p.E = dims[4];
        return cuda::attention_backward_workspace(p);
      },
      py::arg("path"), py::arg("dims"), "float32 elements of backward workspace");
  m.def("cuda_attention_flash_supported", &cuda::attention_flash_supported, py::arg("dtype"), py::arg("E"),
        py::arg("Ev"));
#else
  (void)m;
#endif
}

}  // namespace bind
}  // namespace fl
