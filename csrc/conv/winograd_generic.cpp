// Baseline build of the Winograd transforms (see winograd_impl.h).
#define FL_WINO_NS generic
#include "conv/winograd_impl.h"

namespace fl::winograd {
Transforms transforms_generic() { return {&generic::weights, &generic::input, &generic::output}; }
}  // namespace fl::winograd
