// Device-side helpers for every *.cu file: call checking that names the failing call.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace fl {
namespace cuda {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err));
}

// After a kernel launch: a bad launch configuration shows up here, not at the next sync.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

inline unsigned int blocks_for(int64_t n, int threads, int64_t cap = 65535LL * 32) {
  int64_t b = (n + threads - 1) / threads;
  if (b > cap) b = cap;  // grid-stride loops cover the rest
  return static_cast<unsigned int>(b < 1 ? 1 : b);
}

}  // namespace cuda
}  // namespace fl

#define FL_CUDA_CHECK(call) ::fl::cuda::check((call), #call)
