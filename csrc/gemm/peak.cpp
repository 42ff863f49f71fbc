#include "gemm/peak.h"

#include <omp.h>

#include <chrono>

#include "core/cpu_features.h"

namespace fl {

double measure_fma_peak_gflops(int threads) {
  const Isa isa = active_isa();
  if (isa == Isa::generic) return 0.0;  // no FMA loop for the portable path
  const index_t iters = 20'000'000;
  const double lanes = isa == Isa::avx512 ? 16 : 8, chains = isa == Isa::avx512 ? 24 : 12;
  volatile float sink = 0.0f;
  double best = 0.0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads)
    {
#if defined(FASTLAYERS_X86)
      const float r = isa == Isa::avx512 ? fma_loop_avx512(iters) : fma_loop_avx2(iters);
#pragma omp atomic
      sink += r;
#endif
    }
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, threads * iters * chains * lanes * 2.0 / sec / 1e9);
  }
  return best;
}

}  // namespace fl
