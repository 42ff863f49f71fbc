// Bindings of the norm family (filled in by its kernels' issue).
#include "bindings/bind_common.h"

namespace fl {
namespace bind {

void bind_norm(py::module_& m) {}

}  // namespace bind
}  // namespace fl
