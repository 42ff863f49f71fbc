#include "core/parallel.h"

#include <atomic>
#include <cstdlib>
#include <thread>

namespace fl {
namespace {

int default_threads() {
  if (const char* env = std::getenv("FASTLAYERS_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

std::atomic<int>& slot() {
  static std::atomic<int> n{default_threads()};
  return n;
}

}  // namespace

int num_threads() { return slot().load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  FL_CHECK(n >= 1, "set_num_threads: n must be >= 1, got ", n);
  slot().store(n);
}

}  // namespace fl
