// CPU threading: one global thread count (fl.set_num_threads) used by every OpenMP region.
#pragma once

#include <omp.h>

#include <algorithm>

#include "core/common.h"

namespace fl {

int num_threads();          // current setting (>= 1)
void set_num_threads(int n);  // n >= 1

// Threads worth using for `work` units when each thread should get at least `grain`.
inline int threads_for(index_t work, index_t grain) {
  if (omp_in_parallel()) return 1;  // nested calls run serially inside the caller's team
  const index_t useful = std::max<index_t>(1, work / std::max<index_t>(1, grain));
  return static_cast<int>(std::min<index_t>(num_threads(), useful));
}

// Run f(begin, end) over [0, n) split into contiguous chunks, one per thread.
template <typename F>
void parallel_for(index_t n, index_t grain, F&& f) {
  if (n <= 0) return;
  const int nt = threads_for(n, grain);
  if (nt <= 1) {
    f(index_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const index_t begin = n * t / T, end = n * (t + 1) / T;
    if (begin < end) f(begin, end);
  }
}

}  // namespace fl
