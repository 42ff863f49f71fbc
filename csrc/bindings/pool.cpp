// Bindings of the pool family (filled in by its kernels' issue).
#include "bindings/bind_common.h"

namespace fl {
namespace bind {

void bind_pool(py::module_& m) {}

}  // namespace bind
}  // namespace fl
