// Helpers every binding file uses. The Python layer (python/fastlayers/_arrays.py) has
// already checked dtypes and shapes and allocated outputs; these checks are the last line
// of defence so that a bug up there is an exception, never a read out of bounds.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <vector>

#include "core/common.h"

namespace fl {
namespace bind {

namespace py = pybind11;

inline void require_f32(const py::array& a, const char* name) {
  if (!py::dtype::of<float>().is(a.dtype()))
    throw py::type_error(str_cat(name, ": expected float32, got ", std::string(py::str(a.dtype()))));
}

// Input array of any strides: pointer to element 0 (strides via elem_strides()).
inline const float* in_ptr(const py::array& a, const char* name) {
  require_f32(a, name);
  return static_cast<const float*>(a.data());
}

// Contiguous input.
inline const float* in_contig(const py::array& a, const char* name) {
  require_f32(a, name);
  FL_CHECK(a.flags() & py::array::c_style, name, ": internal error, expected a C-contiguous array");
  return static_cast<const float*>(a.data());
}

// Optional contiguous input (None -> nullptr).
inline const float* in_opt(const py::object& o, const char* name) {
  if (o.is_none()) return nullptr;
  return in_contig(py::cast<py::array>(o), name);
}

// Output: float32, C-contiguous, writeable.
inline float* out_ptr(py::array& a, const char* name) {
  require_f32(a, name);
  FL_CHECK(a.flags() & py::array::c_style, name, ": internal error, expected a C-contiguous output");
  FL_CHECK(a.writeable(), name, ": output is read-only");
  return static_cast<float*>(a.mutable_data());
}

// Element strides (bytes / 4); a float32 view always has byte strides divisible by 4
// unless it came from a structured dtype, which we reject.
inline index_t elem_stride(const py::array& a, int dim, const char* name) {
  const auto s = a.strides(dim);
  FL_CHECK(s % static_cast<py::ssize_t>(sizeof(float)) == 0, name, ": stride ", s,
           " bytes is not a multiple of 4; pass a regular float32 array");
  return static_cast<index_t>(s / static_cast<py::ssize_t>(sizeof(float)));
}

inline void require_ndim(const py::array& a, int ndim, const char* name) {
  FL_CHECK(a.ndim() == ndim, name, ": internal error, expected ", ndim, "-D, got ", a.ndim(), "-D");
}

// Device pointers from CuPy arrive as integers (arr.data.ptr), streams likewise.
inline const float* dev_in(std::uintptr_t p) { return reinterpret_cast<const float*>(p); }
inline float* dev_out(std::uintptr_t p) { return reinterpret_cast<float*>(p); }
inline void* dev_stream(std::uintptr_t s) { return reinterpret_cast<void*>(s); }

}  // namespace bind
}  // namespace fl
