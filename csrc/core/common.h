// Shared basics for every kernel: argument checks that become Python ValueErrors, the
// index type, and small helpers. Host-only C++ (no CUDA headers), included everywhere.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace fl {

// Sizes and offsets are int64_t everywhere: N*C*H*W easily passes 2^31.
using index_t = int64_t;

// A failed argument check. The bindings translate std::invalid_argument to ValueError.
[[noreturn]] inline void fail_argument(const std::string& msg) { throw std::invalid_argument(msg); }

template <typename... Parts>
std::string str_cat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

}  // namespace fl

// FL_CHECK(cond, "message parts", ...): throw ValueError with the joined message.
#define FL_CHECK(cond, ...)                                   \
  do {                                                        \
    if (!(cond)) ::fl::fail_argument(::fl::str_cat(__VA_ARGS__)); \
  } while (0)
