// 8-float GCC vectors for the conv kernels written once for every ISA (depthwise_impl.h,
// dot_impl.h): one ymm under -mavx2 / the AVX-512 build, two xmm in the baseline build.
// Internal linkage (anonymous namespace): each ISA translation unit keeps its own copy, and
// the baseline build's note that AVX-sized arguments change the ABI does not apply.
#pragma once

#pragma GCC diagnostic ignored "-Wpsabi"

namespace fl {
namespace conv_vec8 {
namespace {

typedef float v8 __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

inline v8 loadu8(const float* p) {
  v8 v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
inline void storeu8(float* p, v8 v) { __builtin_memcpy(p, &v, sizeof(v)); }
inline v8 splat8(float x) { return v8{x, x, x, x, x, x, x, x}; }
inline float hsum8(v8 v) {
  float s = 0.0f;
  for (int l = 0; l < 8; ++l) s += v[l];
  return s;
}

}  // namespace
}  // namespace conv_vec8
}  // namespace fl
