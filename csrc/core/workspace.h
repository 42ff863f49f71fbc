// Scratch memory of the CPU kernels: 64-byte aligned float buffers, and a per-thread cache
// of them kept from one call to the next.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include "core/common.h"

namespace fl {

struct AlignedBuffer {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> ptr;
  explicit AlignedBuffer(index_t n) {
    const index_t bytes = (std::max<index_t>(n, 16) * static_cast<index_t>(sizeof(float)) + 63) / 64 * 64;
    ptr.reset(static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(bytes))));
    if (!ptr) throw std::bad_alloc();
  }
  float* get() const { return ptr.get(); }
};

// Buffers kept from one call to the next (declare one `thread_local` per kernel), grown when
// a call needs more. Allocating ~1.5 MB a call and freeing it let glibc trim the heap and
// fault the pages in again on every call: 253 page faults a call at conv2d 1x128x28x28 on
// 2 threads, ~10% of its time. Held: the largest size asked for, per slot.
class Workspace {
 public:
  float* get(size_t slot, index_t n) {
    if (slot >= bufs_.size()) bufs_.resize(slot + 1);
    Slot& b = bufs_[slot];
    if (!b.buf || b.size < n) {
      b.buf.reset();  // free before allocating the larger one
      b.buf = std::make_unique<AlignedBuffer>(n);
      b.size = n;
    }
    return b.buf->get();
  }

 private:
  struct Slot {
    std::unique_ptr<AlignedBuffer> buf;
    index_t size = 0;
  };
  std::vector<Slot> bufs_;
};

}  // namespace fl
