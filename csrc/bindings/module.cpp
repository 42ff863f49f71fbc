// The compiled module fastlayers._core. Each op family binds itself in its own file
// (bindings/<family>.cpp, a bind_<family> function); this file adds the runtime queries.
#include <pybind11/pybind11.h>

#include "bindings/bind_common.h"
#include "core/cpu_features.h"
#include "core/parallel.h"
#if defined(FASTLAYERS_WITH_CUDA)
#include "core/cuda_api.h"
#endif

namespace py = pybind11;

namespace fl {
namespace bind {
void bind_gemm(py::module_& m);
void bind_elementwise(py::module_& m);
void bind_conv(py::module_& m);
void bind_pool(py::module_& m);
void bind_rnn(py::module_& m);
void bind_attention(py::module_& m);
void bind_norm(py::module_& m);
void bind_loss(py::module_& m);
void bind_misc(py::module_& m);
void bind_optim(py::module_& m);
void bind_cuda_ops(py::module_& m);  // the CUDA kernels (empty without CUDA)
void bind_cuda_conv_rnn(py::module_& m);  // CUDA conv and recurrent kernels (empty without CUDA)
void bind_cuda_attention(py::module_& m);  // CUDA attention (empty without CUDA)
}  // namespace bind
}  // namespace fl

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastlayers compiled kernels (private; use fastlayers.functional)";

  m.def("cpu_isa", [] { return std::string(fl::isa_name(fl::active_isa())); });
  m.def("detected_isa", [] { return std::string(fl::isa_name(fl::detected_isa())); });
  m.def("set_isa", [](const std::string& name) {
    if (name == "generic") fl::set_isa(fl::Isa::generic);
    else if (name == "avx2") fl::set_isa(fl::Isa::avx2);
    else if (name == "avx512") fl::set_isa(fl::Isa::avx512);
    else throw py::value_error("isa: expected 'generic', 'avx2' or 'avx512', got '" + name + "'");
    return std::string(fl::isa_name(fl::active_isa()));
  });
  m.def("get_num_threads", &fl::num_threads);
  m.def("set_num_threads", &fl::set_num_threads);

#if defined(FASTLAYERS_WITH_CUDA)
  m.attr("cuda_built") = true;
  m.def("cuda_device_count", &fl::cuda::device_count);
  m.def("cuda_device_name", &fl::cuda::device_name);
  m.def("cuda_runtime_version", &fl::cuda::runtime_version);
  m.def("cuda_driver_version", &fl::cuda::driver_version);
#else
  m.attr("cuda_built") = false;
  m.def("cuda_device_count", [] { return 0; });
#endif

  fl::bind::bind_gemm(m);
  fl::bind::bind_elementwise(m);
  fl::bind::bind_conv(m);
  fl::bind::bind_pool(m);
  fl::bind::bind_rnn(m);
  fl::bind::bind_attention(m);
  fl::bind::bind_norm(m);
  fl::bind::bind_loss(m);
  fl::bind::bind_misc(m);
  fl::bind::bind_optim(m);
  fl::bind::bind_cuda_ops(m);
  fl::bind::bind_cuda_conv_rnn(m);
  fl::bind::bind_cuda_attention(m);
}
