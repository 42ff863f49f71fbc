// CPU threading: one global thread count (fl.set_num_threads) used by every OpenMP region.
#pragma once

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <memory>

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

// Items [0, n) in T contiguous shares, one per thread, with stealing: each thread runs its
// own share front to back, then what is left of the others' from their back ends. A claim
// flag per item runs each exactly once, whatever the team size (a share with no thread is
// taken by the others). Why: on a shared VM one core can run several percent slower than
// the other for a whole call (the two halves of a batch-1 conv: 1237 and 1282 us, then
// 1315 and 1245), and a static split waits for the slower one.
class StealQueue {
 public:
  StealQueue(index_t n, int T) : n_(n), T_(std::max(1, T)), claimed_(new std::atomic<bool>[n > 0 ? n : 1]) {
    for (index_t i = 0; i < n_; ++i) claimed_[i].store(false, std::memory_order_relaxed);
  }
  // Run f(item) for the items thread tid gets; call from every thread of the team.
  template <typename F>
  void run(int tid, F&& f) {
    for (index_t i = begin(tid); i < end(tid) && claim(i); ++i) f(i);
    for (int o = 1; o < T_; ++o) {
      const int v = (tid + o) % T_;
      for (index_t i = end(v) - 1; i >= begin(v) && claim(i); --i) f(i);
    }
  }

 private:
  index_t begin(int t) const { return n_ * t / T_; }
  index_t end(int t) const { return n_ * (t + 1) / T_; }
  bool claim(index_t i) { return !claimed_[i].exchange(true, std::memory_order_relaxed); }
  index_t n_;
  int T_;
  std::unique_ptr<std::atomic<bool>[]> claimed_;
};

}  // namespace fl
