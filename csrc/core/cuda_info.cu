#include <cstdio>

#include "core/cuda_api.h"
#include "core/cuda_check.cuh"

namespace fl {
namespace cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver/no device" error
    return 0;
  }
  return n;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  FL_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  char buf[320];
  std::snprintf(buf, sizeof(buf), "%s (sm_%d%d)", prop.name, prop.major, prop.minor);
  return buf;
}

int runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

int driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) cudaGetLastError();
  return v;
}

}  // namespace cuda
}  // namespace fl
