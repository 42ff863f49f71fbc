// Dropout (counter-based random mask) and embedding (gather / race-free scatter-add).
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "core/parallel.h"
#include "misc/misc.h"

namespace fl {
namespace {

constexpr index_t kGrainElems = 1 << 15;  // elements per thread before a split pays

// splitmix64's finaliser: a bijective mix whose outputs for consecutive counters pass
// BigCrush; one call gives the 24-bit uniforms of two elements.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void check_indices(const int64_t* idx, index_t n, index_t v) {
  for (index_t i = 0; i < n; ++i)
    FL_CHECK(idx[i] >= 0 && idx[i] < v, "indices: index ", idx[i], " at flat position ", i,
             " is out of range for weight with ", v, " rows (valid: 0 to ", v - 1, ")");
}

}  // namespace

void dropout_forward(const float* x, float* y, uint8_t* mask, index_t n, double keep_prob, float scale,
                     uint64_t seed) {
  // keep when a 24-bit uniform u < keep_prob * 2^24: keep_prob 1 keeps all, 0 keeps none.
  const uint64_t thr = static_cast<uint64_t>(keep_prob * 16777216.0 + 0.5);
  const uint64_t key = mix64(seed ^ 0x9E3779B97F4A7C15ull);
  const index_t pairs = (n + 1) / 2;
  parallel_for(pairs, kGrainElems / 2, [&](index_t b, index_t e) {
    for (index_t k = b; k < e; ++k) {
      const uint64_t h = mix64(key + static_cast<uint64_t>(k) * 0x9E3779B97F4A7C15ull);
      const index_t i = 2 * k;
      const bool k0 = ((h >> 40) & 0xFFFFFF) < thr;
      mask[i] = k0;
      y[i] = k0 ? x[i] * scale : 0.0f;
      if (i + 1 < n) {
        const bool k1 = ((h >> 8) & 0xFFFFFF) < thr;
        mask[i + 1] = k1;
        y[i + 1] = k1 ? x[i + 1] * scale : 0.0f;
      }
    }
  });
}

void dropout_backward(const float* g, const uint8_t* mask, float* gx, index_t n, float scale) {
  parallel_for(n, kGrainElems, [&](index_t b, index_t e) {
#pragma omp simd
    for (index_t i = b; i < e; ++i) gx[i] = mask[i] ? g[i] * scale : 0.0f;
  });
}

void embedding_forward(const int64_t* idx, index_t n, const float* weight, index_t v, index_t d, float* out) {
  check_indices(idx, n, v);
  parallel_for(n, std::max<index_t>(1, kGrainElems / std::max<index_t>(d, 1)), [&](index_t b, index_t e) {
    for (index_t i = b; i < e; ++i) std::memcpy(out + i * d, weight + idx[i] * d, sizeof(float) * d);
  });
}

void embedding_backward(const float* g, const int64_t* idx, index_t n, index_t v, index_t d, float* gw) {
  check_indices(idx, n, v);
  std::fill(gw, gw + v * d, 0.0f);
  // Each thread owns a range of weight rows and scans every index, adding the ones that land
  // in its range: no two threads write one row (no atomics, no false sharing but at range
  // edges), and each row sums its contributions in index order, the same for any thread count.
  const int nt = threads_for(n * d, kGrainElems);
  auto body = [&](index_t r0, index_t r1) {
    for (index_t i = 0; i < n; ++i) {
      const int64_t r = idx[i];
      if (r < r0 || r >= r1) continue;
      float* dst = gw + r * d;
      const float* src = g + i * d;
#pragma omp simd
      for (index_t j = 0; j < d; ++j) dst[j] += src[j];
    }
  };
  if (nt <= 1) {
    body(0, v);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num(), T = omp_get_num_threads();
    body(v * t / T, v * (t + 1) / T);
  }
}

}  // namespace fl
