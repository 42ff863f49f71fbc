// The host-only seam between the bindings and the CUDA kernels (tiny-cuda-nn's cpp_api
// idea): raw device pointers, sizes and an opaque stream handle cross here, never CUDA
// headers, so a CPU-only build is the same binding code minus the *.cu library.
// Every function throws std::runtime_error naming the failing CUDA call.
#pragma once

#include <cstdint>
#include <string>

#include "core/common.h"

namespace fl {
namespace cuda {

using Stream = void*;  // cudaStream_t, as an opaque handle

// Devices visible to this process; 0 when the driver or the GPU is missing (never throws).
int device_count();
// "name (sm_XY)" of a device, for info().
std::string device_name(int device);
// Version numbers, for the benchmarks' metadata.
int runtime_version();
int driver_version();

}  // namespace cuda
}  // namespace fl
