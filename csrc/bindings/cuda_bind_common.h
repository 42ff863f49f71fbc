// What the CUDA binding files share (cuda_ops.cpp, cuda_conv_rnn.cpp, cuda_attention.cpp):
// device pointers and CuPy's stream arrive from Python as integers (arr.data.ptr, 0 for None;
// cupy.cuda.get_current_stream().ptr) and are turned back into typed pointers here.
#pragma once

#include <cstdint>

#include "core/cuda_api.h"

namespace fl {
namespace bind {

using uptr = std::uintptr_t;

template <typename T = float>
inline T* dp(uptr p) {
  return reinterpret_cast<T*>(p);
}

inline cuda::Stream st(uptr s) { return reinterpret_cast<cuda::Stream>(s); }

}  // namespace bind
}  // namespace fl
