// Bindings of the rnn family (filled in by its kernels' issue).
#include "bindings/bind_common.h"

namespace fl {
namespace bind {

void bind_rnn(py::module_& m) {}

}  // namespace bind
}  // namespace fl
